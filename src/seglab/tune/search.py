"""The search: Optuna's TPE sampler proposes trials, successive halving prunes them at equal-work rungs, and
the Optuna study in the tune folder is the whole state, so a killed search resumes with the same command.

Why batches, and why the rung decisions are taken here rather than inside each trial: a trial's work is
training (minutes), done by jobs that may run side by side (study/executors.py). If each trial asked Optuna
whether to stop as soon as it reached a rung, the answer would depend on which other trials happened to be
there first, and TPE's next proposal on which had finished: a parallel search would try other trials than a
sequential one with the same seed. Here ``batch`` trials are proposed together (the sampler seeded by the
search's seed and the batch's index, so a resumed search proposes what an uninterrupted one would have), the
batch's live trials train to a rung, and only then are they reported and judged, in trial-number order, by
Optuna's SuccessiveHalvingPruner: the same trials, values and prunings whatever ran in parallel, and a
promoted trial continues from its checkpoint to the next rung (``Worker``). The price is that a batch waits
for its slowest member at each rung, which equal-work rungs keep small.

What a trial does is the ``Worker``'s business: ``tune.worker.TrainWorker`` trains seglab runs; tests pass a
synthetic one. Nothing here touches the test split.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from seglab.errors import SeglabError
from seglab.tune.space import Param, TuneSpec

log = logging.getLogger("seglab")

BATCH_ATTR, DECISION, ERROR = "seglab_batch", "seglab_rung_{}", "seglab_error"


@dataclass(frozen=True)
class Rungs:
    """Successive halving's rungs as shares of a trial's full budget: 1, eta, eta^2, ... eta^(n-1) units, the
    last unit count being the full run. Optuna sees the units (its pruner's steps); each trial turns them into
    optimizer steps from its own full run's steps (``steps``), which the budget calibration made equal work
    for every trial of the same step cost, so every trial at a rung has done the same share of the same work."""

    count: int
    reduction: int

    @property
    def units(self) -> list[int]:
        return [self.reduction ** k for k in range(self.count)]

    def steps(self, full_steps: int, rung: int) -> int:
        """Optimizer steps at ``rung`` of a run of ``full_steps``; SeglabError when the run is too short for
        every rung to be a distinct step count."""
        every = [max(1, full_steps * u // self.units[-1]) for u in self.units[:-1]] + [full_steps]
        if len(set(every)) < len(every):
            raise SeglabError(f"a full run of {full_steps} optimizer steps is too short for {self.count} rungs "
                              f"with reduction {self.reduction} (rung steps {every}); use fewer rungs or a "
                              f"larger budget")
        return every[rung]


@dataclass(frozen=True)
class Job:
    """Train one trial (or re-run) to ``rung`` of its full run (from its checkpoint if it has one)."""

    key: str  # run name: trial-003, or trial-003-s1000 for a re-run
    overrides: dict  # {config key: value} over the base
    rung: int  # 0 .. rungs-1; the last is the full run
    rungs: Rungs
    seed: int | None = None  # None: the base's seed (every trial of the search shares it)

    @property
    def full(self) -> bool:
        return self.rung == self.rungs.count - 1

    def steps(self, full_steps: int) -> int:
        return self.rungs.steps(full_steps, self.rung)


# A worker runs jobs (one after another or side by side) and returns, per job key, the val metric reached at
# the job's rung, or the one-line reason it failed (a str).
Worker = Callable[[list[Job]], dict[str, "float | str"]]


def trial_name(number: int) -> str:
    return f"trial-{number:03d}"


def create_study(spec: TuneSpec, storage: str, rungs: Rungs):
    """The tune's Optuna study (created, or loaded to resume): maximise the val metric, prune by successive
    halving at the rungs' steps."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=spec.reduction,
                                                    min_early_stopping_rate=0)
    try:
        study = optuna.create_study(study_name=spec.name, storage=storage, direction="maximize", pruner=pruner,
                                    load_if_exists=True)
    except Exception as e:  # noqa: BLE001 - a bad URL, a locked or corrupt database: one line
        raise SeglabError(f"Optuna storage {storage}: cannot open it ({type(e).__name__}: "
                          f"{str(e).strip().splitlines()[0] if str(e).strip() else ''})") from None
    saved = study.user_attrs.get("seglab")
    mine = {"rungs": rungs.units, "metric": spec.metric, "seed": spec.seed, "batch": spec.batch,
            "params": [p.key for p in spec.params]}
    if saved is None:
        study.set_user_attr("seglab", mine)
    elif saved != mine:
        changed = [k for k in mine if saved.get(k) != mine[k]]
        raise SeglabError(f"{storage}: this tune was started with other settings ({', '.join(changed)}: "
                          f"{', '.join(f'{saved.get(k)} then, {mine[k]} now' for k in changed)}); resume it with "
                          f"the same tune file, or start a new one under another name or --out")
    return study


def suggest(trial, params: list[Param]) -> dict:
    """Draw one trial's values in file order; a conditional parameter only where its condition holds."""
    chosen: dict = {}
    for p in params:
        if not p.applies(chosen):
            continue
        if p.kind == "choice":
            drawn = trial.suggest_categorical(p.key, list(p.labels))
        elif p.kind == "int":
            drawn = trial.suggest_int(p.key, p.low, p.high, step=p.step or 1, log=p.log)
        else:
            drawn = trial.suggest_float(p.key, float(p.low), float(p.high), log=p.log)
        chosen[p.key] = p.value_of(drawn)
    return chosen


def overrides_of(trial, params: list[Param]) -> dict:
    """A stored trial's config values (choices back from their labels)."""
    by_key = {p.key: p for p in params}
    return {k: by_key[k].value_of(v) for k, v in trial.params.items() if k in by_key}


def _sampler(spec: TuneSpec, batch: int):
    import optuna

    startup = max(spec.batch, min(10, spec.trials // 2))
    return optuna.samplers.TPESampler(seed=spec.seed * 100_003 + batch, n_startup_trials=startup)


def search(spec: TuneSpec, study, rungs: Rungs, worker: Worker, trials: int | None = None,
           on_batch: Callable[[int], None] | None = None) -> None:
    """Run trials until ``trials`` (default: the spec's) have completed, been pruned or failed. Trials left
    running by a killed search are finished first, from their checkpoints, before new ones are proposed."""
    from optuna.trial import TrialState

    wanted = trials or spec.trials
    while True:
        all_trials = study.get_trials(deepcopy=False)
        live = [t for t in all_trials if t.state == TrialState.RUNNING]
        ended = [t for t in all_trials if t.state.is_finished()]
        if not live:
            if len(ended) >= wanted:
                return
            batch = 1 + max((t.user_attrs.get(BATCH_ATTR, -1) for t in all_trials), default=-1)
            study.sampler = _sampler(spec, batch)
            live = []
            for _ in range(min(spec.batch, wanted - len(ended))):
                trial = study.ask()
                trial.set_user_attr(BATCH_ATTR, batch)
                suggest(trial, spec.params)
                live.append(study._storage.get_trial(trial._trial_id))
            log.info("tune %s: batch %d, trials %s", spec.name, batch,
                     ", ".join(str(t.number) for t in live))
        else:
            batch = live[0].user_attrs.get(BATCH_ATTR, 0)
            log.info("tune %s: resuming batch %d (trials %s)", spec.name, batch,
                     ", ".join(str(t.number) for t in live))
        run_batch(spec, study, rungs, worker, sorted(live, key=lambda t: t.number))
        if on_batch:
            on_batch(batch)


def run_batch(spec: TuneSpec, study, rungs: Rungs, worker: Worker, members: list) -> None:
    """Train the batch's trials rung by rung; after each rung report and judge them in number order."""
    import optuna
    from optuna.trial import TrialState

    alive = {t.number: t for t in members}
    for k, steps in enumerate(rungs.units):  # Optuna's "step" of a rung: its units of budget
        last = k == rungs.count - 1
        todo = [t for t in alive.values() if steps not in t.intermediate_values]
        results = worker([Job(trial_name(t.number), overrides_of(t, spec.params), k, rungs) for t in todo]) \
            if todo else {}
        for number in sorted(alive):
            frozen = study._storage.get_trial(alive[number]._trial_id)
            trial = optuna.trial.Trial(study, frozen._trial_id)
            if steps in frozen.intermediate_values:  # reported before the search was killed
                value = frozen.intermediate_values[steps]
            else:
                result = results.get(trial_name(number), "the worker returned no result")
                if isinstance(result, str):
                    log.warning("trial %d failed: %s", number, result)
                    trial.set_user_attr(ERROR, result)
                    study.tell(number, state=TrialState.FAIL)
                    del alive[number]
                    continue
                value = float(result)
                trial.report(value, steps)
            if last:
                study.tell(number, value)
                del alive[number]
                continue
            decision = frozen.user_attrs.get(DECISION.format(k))
            if decision is None:
                decision = "pruned" if trial.should_prune() else "promoted"
                trial.set_user_attr(DECISION.format(k), decision)
            if decision == "pruned":
                study.tell(number, state=TrialState.PRUNED)
                del alive[number]
        if not alive:
            return


def standing(trial) -> tuple[int, float]:
    """How far a trial got and how well: (rungs passed, value at its last rung); finished trials rank first."""
    if not trial.intermediate_values:
        return (-1, float("-inf"))
    last = max(trial.intermediate_values)
    return (len(trial.intermediate_values), trial.intermediate_values[last])


def finalists(study, k: int) -> list:
    """The top ``k`` trials: the furthest rung first, then the best value there (a completed trial outranks a
    pruned one); ties to the earlier trial."""
    from optuna.trial import TrialState

    ranked = [t for t in study.get_trials(deepcopy=False) if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    ranked.sort(key=lambda t: (-standing(t)[0], -standing(t)[1], t.number))
    return ranked[:k]

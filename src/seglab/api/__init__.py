"""seglab's Python API: the commands as functions that return objects, for scripts and notebooks.

    import seglab

    run = seglab.train(data="../shared/camvid", model="unet:resnet18", epochs=1, size="192x256")
    run                                   # in Jupyter: the run's metrics, per-class table and curves
    run.metrics, run.curves, run.per_class
    seglab.evaluate(run, split="val")     # Metrics: a dict of the split's numbers, with DataFrames
    study = seglab.study("quick", data="../shared/camvid")
    study.table                           # the report's comparison, one row per configuration
    search = seglab.tune("quick-cnn", data="../shared/camvid")
    search.finalists, search.winner_config   # search scores beside re-run scores; winner.yaml
    seglab.load(run).predict(image)

**Keys.** ``train`` takes the keys ``seglab train`` takes, checked by the same code (``experiment.build_config``)
with the same one-line errors: a config file (``config=``) or ``preset=``; every ``seglab train`` option by
its name (``model``, ``epochs``, ``size``, ``batch``, ``lr``, ...; ``data`` is ``--data``, the dataset folder);
whole config sections as dicts (``data={...}``, ``model={...}``, ``train={...}``); and any config key as
``set={"train.weight_decay": 1e-4}`` or ``set=["train.weight_decay=1e-4"]`` (exactly ``--set``). Options
override the file, ``set`` overrides everything. Errors raise ``seglab.errors.SeglabError`` (a bad value:
ConfigError``, whose text is the line ``seglab train`` prints after ``error:``); in IPython and Jupyter
they show as that one line (``%tb`` shows the traceback).

**Interrupting** a cell (or Ctrl-C) raises ``seglab.errors.Interrupted`` and leaves the run folder resumable:
``seglab.train(resume=run_folder)``, the same resume as ``seglab train --resume``.

Nothing here imports torch until a call needs it.
"""

from seglab.api.calls import check_data, evaluate, study, train, tune
from seglab.api.results import DataCheck, Metrics, Run, Study, Tune

__all__ = ["DataCheck", "Metrics", "Run", "Study", "Tune", "check_data", "evaluate", "study", "train", "tune"]

"""The built-in seed studies: seed000 and seed001 rerun each source notebook's runs with that notebook's own
settings (every key checked here, run by run, against the notebook's cells), and seed000-fair / seed001-fair
keep the one-protocol versions, whose descriptions say what differs from the notebook and why."""

import json

import pytest
import yaml
from fakes import REAL_CAMVID, make_camvid, needs_real_camvid

from seglab.study.compare import load_results
from seglab.study.conclusions import conclusions
from seglab.study.fairness import protocol_differences
from seglab.study.spec import builtin_studies, load_study
from seglab.training.plan import batches_per_epoch

# The notebook's [0.5, 1, 1, 2, 2, 2.5] is for its MAP's classes building (and every unmapped pixel), road, sky,
# car, sidewalk, pedestrian (lines 95-102, 210); by name, in camvid6's order background, road, building, car,
# sky, pedestrian:
NOTEBOOK_WEIGHTS = [0.5, 1.0, 0.5, 2.0, 1.0, 2.5]

# seed000 (000_*.txt): every run Resize 256x256, batch 4, hflip, Adam 1e-3, 10 epochs, CE, no schedule.
SEED000 = {  # run -> (spec, class weights, notebook lines)
    "unet-r18+weights": ("unet:resnet18", NOTEBOOK_WEIGHTS, "L191-264"),
    "simplesegnet": ("scratch:simplesegnet:32", None, "L398-458"),
    "simplesegnet+weights": ("scratch:simplesegnet:32", NOTEBOOK_WEIGHTS, "L568-600"),
}

BASE = {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "scheduler": "none", "loss": "ce", "epochs": 3}
RECIPE = {"optimizer": "adamw", "lr": 5e-4, "weight_decay": 1e-4, "scheduler": "cosine", "scheduler_interval": "epoch",
          "epochs": 5}
DICE = {"loss": "dice_ce", "ce_weight": 0.5, "dice_weight": 0.5}
AUG = {"hflip": True, "vflip": True, "rotate": 10.0, "brightness": [0.8, 1.2], "contrast": [0.8, 1.2]}
R34, MIT = "unet:resnet34", "unet:mit_b0"
# seed001 (001_*.txt): run -> (spec, size, batch, train keys, data keys, notebook lines)
SEED001 = {
    "unet-r34": (R34, (128, 128), 4, BASE, {}, "L23-140"),
    "unet-r34+aug": (R34, (128, 128), 4, BASE, AUG, "L266-390"),
    "unet-r34+adamw-cosine": (R34, (128, 128), 8, {**BASE, **RECIPE}, {}, "L528-635"),
    "unet-r34+dice-ce": (R34, (128, 128), 4, {**BASE, **DICE}, {}, "L755-866"),
    "unet-r34+adamw-cosine+dice-ce": (R34, (128, 128), 8, {**BASE, **RECIPE, **DICE}, {}, "L991-1107"),
    "unet-mitb0": (MIT, (224, 224), 2, BASE, {}, "L145-249"),
    "unet-mitb0+aug": (MIT, (224, 224), 2, BASE, AUG, "L395-519"),
    "unet-mitb0+adamw-cosine": (MIT, (224, 224), 4, {**BASE, **RECIPE}, {}, "L642-748"),
    "unet-mitb0+dice-ce": (MIT, (224, 224), 2, {**BASE, **DICE}, {}, "L871-982"),
    "unet-mitb0+adamw-cosine+dice-ce": (MIT, (224, 224), 4, {**BASE, **RECIPE, **DICE}, {}, "L1114-1229"),
    "scratch-unet": ("scratch:unet:64", (128, 128), 4, BASE, {}, "L1409-1507"),
    "scratch-unet+adamw-cosine+dice-ce": ("scratch:unet:64", (128, 128), 8, {**BASE, **RECIPE, **DICE}, {},
                                          "L1627-1743"),
    # the notebook's ViT baseline trained with AdamW (lr 1e-3, weight decay 1e-4), not Adam
    "scratch-vit": ("scratch:vit:384", (224, 224), 2, {**BASE, "optimizer": "adamw", "weight_decay": 1e-4}, {},
                    "L1512-1610"),
    "scratch-vit+adamw-cosine+dice-ce": ("scratch:vit:384", (224, 224), 4, {**BASE, **RECIPE, **DICE}, {},
                                         "L1750-1866"),
}
NO_AUG = {"hflip": False, "vflip": False, "rotate": 0.0, "brightness": None, "contrast": None}


def _runs(name):
    return {r.name: r for r in load_study(name, data_root="../shared/camvid").runs}


def test_the_built_in_list_has_faithful_and_fair_versions():
    assert {"seed000", "seed001", "seed000-fair", "seed001-fair"} <= builtin_studies().keys()
    for name in ("seed000", "seed001", "seed000-fair", "seed001-fair"):
        assert load_study(name).name == name  # the study folder is named after it: the four never share one


def test_seed000_runs_the_notebooks_three_runs_with_its_settings():
    runs = _runs("seed000")
    assert list(runs) == list(SEED000)
    for name, (spec, weights, _) in SEED000.items():
        c = runs[name].config
        assert c.data.root == "../shared/camvid" and runs[name].seed == 0
        assert (c.model.spec, c.model.weights, c.train.class_weights) == (spec, "auto", weights), name
        assert (c.data.remap, c.data.size, c.data.batch_size, c.data.scale_crop) == ("camvid6", (256, 256), 4, False)
        assert (c.data.hflip, c.data.vflip, c.data.rotate, c.data.brightness, c.data.contrast, c.data.color_jitter) \
            == (True, False, 0.0, None, None, False)
        t = c.train
        assert (t.epochs, t.steps, t.budget, t.optimizer, t.lr, t.weight_decay, t.scheduler, t.loss) == \
            (10, None, None, "adam", 1e-3, 0.0, "none", "ce"), name
    study = load_study("seed000")
    assert {r.group for r in study.runs} == {"seed000"}
    assert [r.name for r in study.runs if r.baseline] == ["simplesegnet"]  # the notebook's weights hypothesis
    assert "as it ran" in study.description and "[0.5, 1, 0.5, 2, 1, 2.5]" in study.description


def test_camvid6_is_the_class_order_the_weights_are_given_in():
    """camvid6's order, which NOTEBOOK_WEIGHTS follows."""
    from seglab.data.classes import CAMVID11, REMAPS, apply_remap

    classes, _ = apply_remap(CAMVID11, __import__("numpy").arange(256, dtype="uint8"), REMAPS["camvid6"])
    assert [n.lower() for n in classes.names] == ["background", "road", "building", "car", "sky", "pedestrian"]


@pytest.mark.parametrize("name", list(SEED001))
def test_seed001_run_has_its_notebook_cells_settings(name):
    spec, size, batch, train, data, _ = SEED001[name]
    c = _runs("seed001")[name].config
    assert (c.model.spec, c.model.weights, c.data.size, c.data.batch_size) == (spec, "auto", size, batch)
    assert c.data.remap is None and c.data.scale_crop is False and c.data.color_jitter is False
    for key, value in {**NO_AUG, **data}.items():
        assert getattr(c.data, key) == value, key
    expected = {"scheduler_interval": "step", "ce_weight": 1.0, "dice_weight": 1.0, "class_weights": None,
                "steps": None, "budget": None, "warmup": 0.0, **train}
    if expected["scheduler"] == "none":
        expected.pop("scheduler_interval")  # no schedule: how often it would move does not matter
    for key, value in expected.items():
        assert getattr(c.train, key) == value, key


def test_seed001_lists_every_notebook_run_once_in_its_groups():
    study = load_study("seed001")
    assert [r.name for r in study.runs] == list(SEED001)
    groups = {r.name: (r.group, r.baseline) for r in study.runs}
    assert [n for n, (_, b) in groups.items() if b] == ["unet-r34", "unet-mitb0", "scratch-unet", "scratch-vit"]
    assert all(groups[n][0] == n.split("+")[0] for n in groups)
    # the notebook's final recipe had no augmentation; the old "+all" names (which had it) are gone
    assert not any(n.endswith("+all") for n in groups)
    assert "without augmentation" in study.description and "confounded" in study.description.lower()
    text = study.source
    for name, (*_, lines) in SEED001.items():  # each run names the notebook lines it reproduces
        assert lines.split("-")[0] in text, name


def test_fair_studies_keep_the_one_protocol_and_say_how_they_differ():
    fair0, fair1 = load_study("seed000-fair"), load_study("seed001-fair")
    assert [r.name for r in fair0.runs] == ["unet-r18", "unet-r18+weights", "simplesegnet", "simplesegnet+weights"]
    assert {r.config.train.class_weights for r in fair0.runs} == {None, "median-frequency"}
    assert "median-frequency" in fair0.description and "never had" in fair0.description
    names = [r.name for r in fair1.runs]
    assert "unet-r34+all" in names and "scratch-vit+all" in names and len(names) == 14
    protocol = {(r.config.data.size, r.config.data.batch_size, r.config.train.epochs, r.config.train.lr)
                for r in fair1.runs}
    assert protocol == {((192, 256), 4, 5, 1e-3)}  # one protocol: every run alike but for its idea
    assert {r.config.model.spec for r in fair1.runs} >= {"scratch:unet", "scratch:vit"}
    for words in ("equal work", "one protocol", "void is ignored", "seed001"):
        assert words in fair1.description, words


# seed -> steps of each run on the SegNet CamVid copy (367 training images), to size the studies' wall time
def _steps(name, train_images=367):
    return {r.name: r.config.train.epochs * batches_per_epoch(train_images, r.config.data.batch_size)
            for r in load_study(name).runs}


def test_planned_steps_follow_the_notebooks_epochs_and_batches():
    assert _steps("seed000") == {n: 910 for n in SEED000}  # 10 epochs x 91 batches of 4
    steps = _steps("seed001")
    assert steps["unet-r34"] == 3 * 91 and steps["unet-r34+adamw-cosine"] == 5 * 45
    assert steps["unet-mitb0"] == 3 * 183 and steps["unet-mitb0+adamw-cosine+dice-ce"] == 5 * 91
    assert sum(steps.values()) == 5328


@needs_real_camvid
def test_the_faithful_studies_open_on_the_real_data_without_training():
    """What `seglab study seed001 --data ../shared/camvid` would train: every run's config and its data open."""
    from seglab.data.open import open_data

    for name in ("seed000", "seed001"):
        for run in load_study(name, data_root=str(REAL_CAMVID)).runs:
            classes = open_data(run.config.data).classes
            assert classes.num_classes == (6 if name == "seed000" else 11), run.name


def test_a_confounded_comparison_is_said_so_in_the_conclusions(tmp_path):
    from test_report import make_study

    study = make_study(tmp_path / "s", make_camvid(tmp_path / "camvid", n_per_split=1), seeds=[0], checkpoint=False)
    assert protocol_differences(load_results(study)) == []  # alike but for the idea: nothing to say
    config = study / "runs" / "cnn+recipe" / "config.yaml"
    cfg = yaml.safe_load(config.read_text())
    cfg["train"]["epochs"], cfg["data"]["batch_size"] = 3, 4
    config.write_text(yaml.safe_dump(cfg))
    res = load_results(study)
    assert protocol_differences(res) == [("cnn+recipe", "cnn", [("batch", "4", "8"), ("length", "3 epochs", "5 epochs")])]
    text = "\n".join(conclusions(res))
    assert ("Confounded: **cnn+recipe** differs from its baseline **cnn** in more than its idea (batch 4 vs 8, "
            "length 3 epochs vs 5 epochs)") in text
    # budgets buy different steps per model by design: equal budgets are not a difference
    for run in ("cnn", "cnn+recipe"):
        path = study / "runs" / run / "config.yaml"
        cfg = yaml.safe_load(path.read_text())
        cfg["train"].update(budget="4m", steps=50 if run == "cnn" else 70, epochs=20)
        cfg["data"]["batch_size"] = 8
        path.write_text(yaml.safe_dump(cfg))
    assert protocol_differences(load_results(study)) == []
    json.loads((study / "study.json").read_text())  # the study folder is untouched otherwise

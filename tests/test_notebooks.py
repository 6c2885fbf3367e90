"""The example notebooks (examples/*.ipynb) run end to end in a Jupyter kernel, on a few synthetic images:
each one's parameters cell (tagged "parameters") is replaced by a tiny setting, every other cell runs as
written. In git the notebooks keep no outputs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from fakes import make_camvid

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SRC = Path(__file__).resolve().parents[1] / "src"


def execute(name: str, parameters: str, cwd: Path):
    """Run examples/<name> with its parameters cell replaced; returns the executed notebook."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source = parameters
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])),
           "MPLBACKEND": "Agg", "SEGLAB_PROGRESS_SECONDS": "30"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits them
    try:
        client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                         resources={"metadata": {"path": str(cwd)}})
        client.execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb


def outputs(nb) -> str:
    return json.dumps([c.get("outputs", []) for c in nb.cells])


@pytest.mark.parametrize("name", ["seed001.ipynb", "your-own-data.ipynb"])
def test_notebooks_are_stored_without_outputs(name):
    nb = json.loads((EXAMPLES / name).read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    assert sum("parameters" in c["metadata"].get("tags", []) for c in code) == 1


@pytest.mark.slow
def test_the_seed001_notebook_runs_its_study(tmp_path):
    """seed001 itself, shrunk: two of its runs, 64x96, two steps, no pretrained weights (its runs set their own
    sizes, batches and epochs, as the notebook did, so each run is shrunk too)."""
    from importlib import resources

    data = make_camvid(tmp_path / "camvid", n_per_split=4)
    study = yaml.safe_load((resources.files("seglab") / "studies" / "seed001.yaml").read_text())
    study["defaults"] = {**study["defaults"], "data": {**study["defaults"]["data"], "size": "64x96", "batch_size": 2},
                         "model": {"weights": "none"}, "train": {**study["defaults"]["train"], "steps": 2}}
    for run in study["runs"]:
        run["data"] = {**run.get("data", {}), "size": "64x96", "batch_size": 2}
        run["train"] = {**{k: v for k, v in run.get("train", {}).items() if k != "epochs"}, "steps": 2}
    (tmp_path / "seed001.yaml").write_text(yaml.safe_dump(study))
    nb = execute("seed001.ipynb", f"DATA = {str(data)!r}\nSTUDY = 'seed001.yaml'\n"
                                  f"ONLY = ['scratch-unet', 'scratch-unet+adamw-cosine+dice-ce']\nOUT = 'runs/studies'",
                 tmp_path)
    text = outputs(nb)
    assert "Comparison" in text and "data:image/png;base64" in text and "scratch-unet+adamw-cosine+dice-ce" in text
    assert (tmp_path / "runs" / "studies" / "seed001" / "report.html").is_file()


@pytest.mark.slow
def test_the_own_data_notebook_builds_checks_trains_evaluates_and_predicts(tmp_path):
    camvid = make_camvid(tmp_path / "camvid", n_per_split=4)
    nb = execute("your-own-data.ipynb", f"DATA = None\nCAMVID = {str(camvid)!r}\nIMAGES = 4\n"
                                        "MODEL = 'scratch:simplesegnet'\nWEIGHTS = 'none'\nSIZE = '64x96'\n"
                                        "EPOCHS = 1\nOUT = 'runs'", tmp_path)
    text = outputs(nb)
    assert "no problems found" in text and "Per-class test scores" in text and "image/png" in text
    assert (tmp_path / "my-data" / "classes.yaml").is_file()
    assert len(list((tmp_path / "runs").glob("*/metrics_val.json"))) == 1

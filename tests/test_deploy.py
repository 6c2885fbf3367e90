"""Deployment backends: OpenVINO and ONNX Runtime files (fp32 and INT8) from `seglab export`, checked on real
images of the run's dataset; `seglab predict --backend`; and the latency x accuracy table of `seglab bench
infer`. A tiny untrained SimpleSegNet on a synthetic CamVid stands in for a trained model."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from fakes import assert_one_line_error, make_run, run_cli

from seglab.config import DataConfig, ModelConfig, RunConfig
from seglab.errors import BadValue
from seglab.inference import load
from seglab.inference.verify import compare

SPEC = "scratch:simplesegnet"


@pytest.fixture
def run(tiny_camvid, tmp_path):
    config = RunConfig(model=ModelConfig(spec=SPEC, weights="none"),
                       data=DataConfig(root=str(tiny_camvid), size=(64, 96), eval_size="native")).to_dict()
    return make_run(tmp_path / "run", config)


def _image(seed: int = 0, h: int = 64, w: int = 96) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _agreement(a, b, images) -> float:
    return float(np.mean([(a.predict(im) == b.predict(im)).mean() for im in images]))


def test_openvino_export_is_checked_on_validation_images(capsys, run):
    r = run_cli(capsys, "export", run, "--format", "openvino")
    assert r.code == 0, r.err
    xml = run / "model.xml"
    assert xml.is_file() and xml.with_suffix(".bin").is_file()
    assert f"wrote {xml} (openvino fp32" in r.out
    check = re.search(r"checked on 3 val images of .*: ([\d.]+)% of pixels as PyTorch fp32; mIoU ([\d.]+) "
                      r"\(PyTorch fp32\) -> ([\d.]+)", r.out)
    assert check, r.out
    assert float(check[1]) >= 99.5 and abs(float(check[2]) - float(check[3])) < 0.01
    torch_fp32 = load(run, device="cpu", amp=False)
    shipped = load(xml, amp=False)  # fp32 arithmetic, to compare exactly
    assert shipped.backend.name == "openvino" and shipped.backend.dtype == "fp32"
    assert shipped.classes == torch_fp32.classes  # names and colours travel in the IR's runtime info
    assert _agreement(shipped, torch_fp32, [_image(s) for s in range(3)]) >= 0.995


@pytest.mark.parametrize("fmt, suffix", [("onnx", ".onnx"), ("openvino", ".xml")])
def test_int8_export_is_calibrated_and_says_what_it_costs(capsys, run, fmt, suffix):
    r = run_cli(capsys, "export", run, "--format", fmt, "--int8", "--calibration", "3")
    out = run / f"model_int8{suffix}"
    assert out.is_file(), r.err
    assert f"({fmt} int8" in r.out
    agreement = float(re.search(r"([\d.]+)% of pixels as PyTorch fp32; mIoU [\d.]+ \(PyTorch fp32\) -> [\d.]+ "
                                r"\([+-][\d.]+ points\)", r.out)[1])
    # An untrained net has tiny logit margins, so INT8 may disagree more than the 97% a trained one keeps:
    # then the export is still written and the exit code and a warning say so.
    assert r.code == (0 if agreement >= 97 else 1), (r.code, r.out, r.err)
    assert (r.code == 1) == ("warning: the export labels fewer than 97.0%" in r.err)
    shipped = load(out)
    assert shipped.backend.dtype == "int8"
    assert json.loads(shipped.backend.metadata["seglab"])["precision"] == "int8"


def test_int8_needs_training_images(capsys, run, tmp_path):
    r = run_cli(capsys, "export", run, "--format", "pretrained", "--out", tmp_path / "hub")
    assert r.code == 0, r.err
    assert_one_line_error(run_cli(capsys, "export", tmp_path / "hub", "--format", "openvino", "--int8"),
                          "--int8 calibrates on the run's training images", "pass --data")
    assert_one_line_error(run_cli(capsys, "export", run, "--format", "pretrained", "--int8"), "'--int8'")


def test_calibration_inputs_are_what_the_predictor_feeds(run):
    from seglab.inference.quantize import calibration_inputs

    reference = load(run, device="cpu", amp=False)
    odd = _image(1, 50, 70)
    (x,) = calibration_inputs(reference.backend.model, reference.classes, None, [odd])
    assert x.shape == (1, 3, 64, 96) and x.dtype == np.float32  # padded to multiples of 32, as predict does
    np.testing.assert_array_equal(x[0, :, :50, :70], odd.transpose(2, 0, 1))
    assert not x[0, :, 50:].any() and not x[0, :, :, 70:].any()  # black, as evaluation pads


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_a_run_predicts_on_other_runtimes(run, backend):
    torch_fp32 = load(run, device="cpu", amp=False)
    other = load(run, backend=backend, amp=False)
    assert other.backend.name == backend and other.backend.dtype == "fp32"
    assert _agreement(other, torch_fp32, [_image(s, 37, 53) for s in range(3)]) >= 0.995


def test_backend_choice_errors(capsys, run, tmp_path):
    image = tmp_path / "x.png"
    import cv2

    cv2.imwrite(str(image), _image())
    assert_one_line_error(run_cli(capsys, "predict", run, image, "--backend", "tensorrt", "--out", tmp_path / "p"),
                          "'--backend'", "tensorrt", "openvino")
    r = run_cli(capsys, "export", run, "--format", "onnx", "--out", tmp_path / "m.onnx")
    assert r.code == 0, r.err
    assert_one_line_error(run_cli(capsys, "predict", tmp_path / "m.onnx", image, "--backend", "torch",
                                  "--out", tmp_path / "p"), "'--backend'", "onnxruntime or openvino")
    with pytest.raises(BadValue, match="openvino"):
        load(tmp_path / "m.onnx", backend="torch-compile")
    r = run_cli(capsys, "predict", tmp_path / "m.onnx", image, "--backend", "openvino", "--out", tmp_path / "p")
    assert r.code == 0 and (tmp_path / "p" / "x.png").is_file(), r.err


def test_export_out_gets_the_formats_suffix_or_goes_into_a_folder(capsys, run, tmp_path):
    """The check reopens the export by its suffix: an --out without one once failed after writing."""
    r = run_cli(capsys, "export", run, "--out", tmp_path / "plain")
    assert r.code == 0, r.err
    assert (tmp_path / "plain.onnx").is_file() and not (tmp_path / "plain").exists()
    folder = tmp_path / "exports"
    folder.mkdir()
    r = run_cli(capsys, "export", run, "--out", folder)
    assert r.code == 0, r.err
    assert (folder / "model.onnx").is_file()


@pytest.mark.slow
def test_torch_compile_backend_agrees_with_eager(run):
    eager = load(run, device="cpu", amp=False)
    compiled = load(run, backend="torch-compile", amp=False)
    assert compiled.backend.name == "torch-compile"
    assert _agreement(compiled, eager, [_image(s) for s in range(2)]) >= 0.999


class _Fixed:
    """A predictor stand-in that returns given masks in turn."""

    num_classes = 3

    def __init__(self, masks):
        self.masks = iter(masks)

    def predict(self, image):
        return next(self.masks)


def test_compare_scores_each_predictor_against_labels_and_reference():
    truth = [np.array([[0, 1], [2, 255]], np.uint8), np.array([[1, 1], [2, 2]], np.uint8)]
    reference = _Fixed([np.array([[0, 1], [2, 0]]), np.array([[1, 1], [2, 2]])])
    other = _Fixed([np.array([[0, 1], [1, 0]]), np.array([[1, 1], [2, 0]])])
    result = compare({"ref": reference, "other": other}, [(None, t) for t in truth], "ref", warmup=1)
    assert result["ref"]["miou"] == pytest.approx(1.0)  # the void pixel (255) is not scored
    assert result["other"]["pixel_agreement"] == pytest.approx(6 / 8)
    # other, summed over both images (void left out): class 0 TP 1 of union 2 (a true 2 called 0), class 1
    # TP 3 of union 4 (a true 2 called 1), class 2 TP 1 of union 3
    assert result["other"]["miou"] == pytest.approx((1 / 2 + 3 / 4 + 1 / 3) / 3)
    assert len(result["ref"]["seconds"]) == 1  # the first image is the warm-up


RECORD_FIELDS = {"model", "backend", "precision", "ms_median", "ms_p90", "fps", "test_miou", "pixel_agreement",
                 "peak_mb", "machine", "command"}


@pytest.mark.slow
def test_bench_infer_table(capsys, run, tiny_camvid, tmp_path):
    out = tmp_path / "infer.json"
    r = run_cli(capsys, "bench", "infer", "--data", tiny_camvid, "--checkpoint", run, "--variants",
                "openvino/fp32,onnxruntime/int8", "--frames", "3", "--warmup", "1", "--calibration", "2",
                "--threads", "1", "--out", out)
    assert r.code == 0, r.err
    report = json.loads(out.read_text())
    rows = {(x["backend"], x["precision"]): x for x in report["records"]}
    assert set(rows) == {("torch", "fp32"), ("openvino", "fp32"), ("onnxruntime", "int8")}
    for row in rows.values():
        assert RECORD_FIELDS <= set(row), row
        assert row["frames_timed"] == 2 and row["frames_scored"] == 3
        assert row["ms_p90"] >= row["ms_median"] > 0 and row["fps"] == pytest.approx(1000 / row["ms_median"], 0.01)
        assert 0 <= row["test_miou"] <= 1 and row["peak_mb"] > 0
        assert row["command"].startswith("seglab bench infer") and row["machine"]["threads"] == 1
    assert rows[("torch", "fp32")]["pixel_agreement"] == 1.0
    assert rows[("openvino", "fp32")]["pixel_agreement"] >= 0.995
    assert report["target"] == {"test_miou": 0.65, "fps": 30.0, "met_by": []}  # an untrained net meets nothing


def test_bench_infer_marks_what_the_machine_cannot_run(tiny_camvid, monkeypatch):
    from seglab.bench import infer_bench

    monkeypatch.setattr(infer_bench, "cpu_has_fast_bf16", lambda: False)
    report = infer_bench.run_infer_bench(str(tiny_camvid), SPEC, variants=["openvino/bf16"], frames=2, warmup=1,
                                         threads=1, show=False)
    bf16 = report["records"][1]
    assert bf16["backend"] == "openvino" and bf16["unavailable"] == "this CPU has no bf16 units"
    assert "ms_median" not in bf16


@pytest.mark.parametrize("args, fragments", [
    (["--variants", "warp/fp32"], ["'--variants'", "unknown warp/fp32"]),
    (["--frames", "2", "--warmup", "3"], ["'--frames'", "more than --warmup"]),
])
def test_bench_infer_bad_options(capsys, tiny_camvid, args, fragments):
    assert_one_line_error(run_cli(capsys, "bench", "infer", "--data", tiny_camvid, *args), *fragments)


def test_broken_openvino_files_are_one_line_errors(capsys, run, tmp_path):
    import cv2

    image = tmp_path / "x.png"
    cv2.imwrite(str(image), _image())
    r = run_cli(capsys, "export", run, "--format", "openvino", "--out", tmp_path / "ov" / "m.xml")
    assert r.code == 0, r.err
    (tmp_path / "ov" / "m.bin").unlink()  # the weights beside the graph are gone
    assert_one_line_error(run_cli(capsys, "predict", tmp_path / "ov" / "m.xml", image, "--out", tmp_path / "p"),
                          "m.xml", "not a usable OpenVINO")
    (tmp_path / "junk.xml").write_text("<not a model")
    assert_one_line_error(run_cli(capsys, "predict", tmp_path / "junk.xml", image, "--out", tmp_path / "p"),
                          "junk.xml")
    assert_one_line_error(run_cli(capsys, "predict", tmp_path / "none.xml", image, "--out", tmp_path / "p"),
                          "none.xml: no such OpenVINO file")
    assert not (tmp_path / "p").exists()


def _packages(module: str) -> set[str]:
    """The packages above ``module``: seglab.inference.export.onnx -> seglab, seglab.inference, ...export."""
    return {module.rsplit(".", i)[0] for i in range(1, module.count(".") + 1)}


def _inference_imports() -> dict[str, set[str]]:
    """Module -> the seglab.inference modules it imports (at the top or inside functions). Importing
    ``export.onnx`` from outside ``export/`` runs ``export/__init__`` first, so that counts as imported too;
    the package's own __init__ is a facade nothing inside imports, so it is left out."""
    import ast
    from pathlib import Path

    import seglab.inference

    root = Path(seglab.inference.__file__).parent
    names = {".".join(("seglab.inference", *p.relative_to(root).with_suffix("").parts)).removesuffix(".__init__")
             for p in root.rglob("*.py")}
    graph = {}
    for name in names - {"seglab.inference"}:
        path = root.joinpath(*name.split(".")[2:])
        file = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        targets = set()
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                targets |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in names else node.module
                            for a in node.names}
        packages = {p for t in targets for p in _packages(t) if p not in _packages(name)}
        graph[name] = {t for t in targets | packages if t in names and t not in ("seglab.inference", name)}
    return graph


def test_inference_modules_import_no_cycle():
    """Writers, quantization and the predictor once imported each other in a ring (export -> quantize ->
    predictor -> export): each now depends only on what is below it."""
    graph = _inference_imports()
    assert {"seglab.inference.pipeline", "seglab.inference.quantize", "seglab.inference.export.onnx"} <= set(graph)
    done, path = set(), []

    def visit(module: str) -> None:
        assert module not in path, " -> ".join([*path[path.index(module):], module])
        if module not in done:
            path.append(module)
            for target in sorted(graph[module]):
                visit(target)
            path.pop()
            done.add(module)

    for module in sorted(graph):
        visit(module)

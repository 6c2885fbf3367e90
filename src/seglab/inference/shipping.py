"""The old home of ``seglab export`` as a library call, kept so its importers (bench/infer_bench.py) need no
edit: the pipeline is inference/pipeline.py, calibration inference/quantize.py."""

from seglab.inference.pipeline import MIN_AGREEMENT, Check, Exported, export_model, export_path, write_export
from seglab.inference.quantize import CALIBRATION_IMAGES, calibration_set

__all__ = ["CALIBRATION_IMAGES", "MIN_AGREEMENT", "Check", "Exported", "calibration_set", "export_model",
           "export_path", "write_export"]

"""Use a trained model: ``load(run_or_checkpoint).predict(image) -> mask``, and ship it with one call,
``export_model(run, format="onnx" | "openvino" | "pretrained", int8=..., out=...)``.

    from seglab.inference import load
    predictor = load("runs/unet-resnet34_192x256_bs8_3ep")  # or a .ckpt, a save_pretrained folder, .onnx, .xml
    mask = predictor.predict(np.asarray(Image.open("photo.jpg")))  # (H, W) uint8 class indices

Layout: backends/ reads models to run them (PyTorch, ONNX Runtime, OpenVINO, pretrained folders); export/
writes them (one module a format); metadata.py is what both sides agree a file carries; quantize.py is the
INT8 step; pipeline.py chains writing, quantizing and checking into ``export_model``.
"""

from seglab.inference.backends import OnnxBackend, OpenVinoBackend, TorchBackend, load_pretrained
from seglab.inference.export import export_onnx, save_pretrained, verify_onnx
from seglab.inference.pipeline import Exported, export_model
from seglab.inference.predictor import Predictor, load

__all__ = ["Exported", "OnnxBackend", "OpenVinoBackend", "Predictor", "TorchBackend", "export_model", "export_onnx",
           "load", "load_pretrained", "save_pretrained", "verify_onnx"]

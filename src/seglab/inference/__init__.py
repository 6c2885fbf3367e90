"""Use a trained model: ``load(run_or_checkpoint).predict(image) -> mask``, plus ONNX, OpenVINO and
pretrained export.

    from seglab.inference import load
    predictor = load("runs/unet-resnet34_192x256_bs8_3ep")  # or a .ckpt, a save_pretrained folder, .onnx, .xml
    mask = predictor.predict(np.asarray(Image.open("photo.jpg")))  # (H, W) uint8 class indices
"""

from seglab.inference.backends import OnnxBackend, OpenVinoBackend, TorchBackend
from seglab.inference.export import export_onnx, load_pretrained, save_pretrained, verify_onnx
from seglab.inference.predictor import Predictor, load

__all__ = ["OnnxBackend", "OpenVinoBackend", "Predictor", "TorchBackend", "export_onnx", "load", "load_pretrained",
           "save_pretrained", "verify_onnx"]

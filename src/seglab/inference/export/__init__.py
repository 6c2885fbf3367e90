"""Writing a trained model in a format to ship: ONNX, OpenVINO IR, save_pretrained folder. Each writer does
one format; ``seglab.inference.pipeline.export_model`` chains them (with quantization and a check) into
``seglab export``. Reading these files back is inference/backends/.
"""

from seglab.inference.backends.pretrained import load_pretrained  # its old home, kept for importers
from seglab.inference.export.onnx import check_opset, export_onnx, set_onnx_metadata, verify_onnx
from seglab.inference.export.openvino import convert_openvino, export_openvino, save_openvino
from seglab.inference.export.pretrained import save_pretrained
from seglab.inference.metadata import ONNX_INPUT, ONNX_OPSET, ONNX_OUTPUT, model_info

__all__ = ["ONNX_INPUT", "ONNX_OPSET", "ONNX_OUTPUT", "check_opset", "convert_openvino", "export_onnx",
           "export_openvino", "load_pretrained", "model_info", "save_openvino", "save_pretrained",
           "set_onnx_metadata", "verify_onnx"]

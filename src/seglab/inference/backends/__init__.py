"""Reading a model to run it: the backends, and the save_pretrained folder reader. What writes those files
is inference/export/; the metadata both sides agree on is inference/metadata.py.

A backend maps (B, 3, H, W) uint8 RGB to (B, C, H, W) float32 logits on the CPU, says which input sizes and
batch sizes it takes (``fixed_size``, ``max_batch``: None where any works), and names itself and the
arithmetic it computes in (``name``: a key of BACKENDS; ``dtype``: fp32, bf16, fp16 or int8), so a
benchmark row or a prediction log says what actually ran.
"""

from seglab.inference.backends.pretrained import load_pretrained
from seglab.inference.backends.runtimes import OnnxBackend, OpenVinoBackend
from seglab.inference.backends.torch_model import DTYPES, TorchBackend

BACKENDS = {
    "torch": "PyTorch eager, in the run's precision (bf16 autocast and channels-last on CPUs with bf16 units)",
    "torch-compile": "PyTorch with torch.compile (the first image pays for compilation)",
    "onnxruntime": "ONNX Runtime (an .onnx file; a run is exported on the fly, fp32)",
    "openvino": "OpenVINO on the CPU (an .xml or .onnx file; a run is exported on the fly), bf16 where the CPU "
                "has it unless --no-amp",
}

Backend = TorchBackend | OnnxBackend | OpenVinoBackend

__all__ = ["BACKENDS", "DTYPES", "Backend", "OnnxBackend", "OpenVinoBackend", "TorchBackend", "load_pretrained",
           ]

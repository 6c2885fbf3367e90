"""seglab: reproducible semantic-segmentation studies with correct metrics."""

from seglab.constants import VERSION as __version__

__all__ = ["__version__", "load"]


def load(target, **kwargs):
    """A Predictor for a run folder, .ckpt, save_pretrained folder or .onnx file; see seglab.inference.load."""
    from seglab.inference import load as _load  # lazy: `import seglab` stays free of torch

    return _load(target, **kwargs)

"""seglab: reproducible semantic-segmentation studies with correct metrics."""

__version__ = "0.1.0"


def load(target, **kwargs):
    """A Predictor for a run folder, .ckpt, save_pretrained folder or .onnx file; see seglab.inference.load."""
    from seglab.inference import load as _load  # lazy: `import seglab` stays free of torch

    return _load(target, **kwargs)

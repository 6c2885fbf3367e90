"""Segmentation models: ``build_model("unet:resnet34", num_classes=11)`` and friends.

See builder.py for specs and weights, scratch.py for the from-scratch models and pretrained.py for
the offline ImageNet EfficientNet-Lite encoders.
"""

from seglab.models.builder import SegmentationNet, build_model, list_models, parse_spec
from seglab.models.scratch import SCRATCH_MODELS, SimpleSegNet, UNet, ViTSegmenter

__all__ = [
    "SCRATCH_MODELS",
    "SegmentationNet",
    "SimpleSegNet",
    "UNet",
    "ViTSegmenter",
    "build_model",
    "list_models",
    "parse_spec",
]

"""Segmentation models: ``build_model("unet:resnet34", num_classes=11)`` and friends.

builder.py builds a spec with a weights choice; spec.py is the spec grammar, weights.py the hub and file
weight sources, pretrained.py the offline ImageNet EfficientNet-Lite encoders, catalogue.py what
``seglab models`` lists, scratch.py the from-scratch models and tta.py test-time augmentation.
"""

from seglab.models.builder import SegmentationNet, build_model
from seglab.models.catalogue import list_models
from seglab.models.scratch import SCRATCH_MODELS, SimpleSegNet, UNet, ViTSegmenter
from seglab.models.spec import parse_spec

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

"""seglab: reproducible semantic-segmentation studies with correct metrics."""

__version__ = "0.1.0"

"""Every number seglab reports, from per-image sums added up over a split.

- ``confusion``: one confusion matrix per image, summed over the split: pixel accuracy, IoU, Dice and their
  class means (the standard CamVid protocol; never averaged per batch);
- ``boundary``: Boundary IoU per class (Cheng et al., CVPR 2021) from per-image band counts;
- ``calibration``: pixel-wise expected calibration error from per-image histograms, and temperature scaling;
- ``summary``: the headline metrics as functions of those per-image arrays, and their bootstrap intervals
  over images.
"""

from seglab.constants import IGNORE_INDEX
from seglab.metrics.boundary import boundary_counts, boundary_iou, boundary_width, mean_boundary_iou
from seglab.metrics.calibration import calibration_histogram, ece, fit_temperature, histogram, reliability
from seglab.metrics.confusion import ConfusionMatrix, class_iou, mean_iou, per_image_confusion
from seglab.metrics.summary import SPLIT_METRICS, bootstrap_intervals, split_value

__all__ = ["IGNORE_INDEX", "SPLIT_METRICS", "ConfusionMatrix", "bootstrap_intervals", "boundary_counts", "boundary_iou",
           "boundary_width", "calibration_histogram", "class_iou", "ece", "fit_temperature", "histogram",
           "mean_boundary_iou", "mean_iou", "per_image_confusion", "reliability", "split_value"]

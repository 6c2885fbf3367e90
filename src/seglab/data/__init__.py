"""Data: layout readers, the one dataset class, transform presets, CamVid download and the data check."""

from seglab.data.check import check_source, format_check
from seglab.data.classes import CAMVID11, CAMVID32, REMAPS, ClassSet
from seglab.data.dataset import SegmentationDataset
from seglab.data.download import default_data_root, ensure_camvid
from seglab.data.exports import FORMATS as EXPORT_FORMATS
from seglab.data.sources import LAYOUTS, DataSource, Sample, open_source
from seglab.data.transforms import EvalPreset, TrainPreset

__all__ = [
    "CAMVID11", "CAMVID32", "EXPORT_FORMATS", "LAYOUTS", "REMAPS", "ClassSet", "DataSource", "EvalPreset", "Sample",
    "SegmentationDataset", "TrainPreset", "check_source", "default_data_root", "ensure_camvid",
    "format_check", "open_source",
]

"""The class tables of the public benchmarks seglab reads (Cityscapes, ADE20K, PASCAL VOC 2012), as their
official tools define them, so a model trained here reports the classes, order and colours of published results.

Sources: Cityscapes from cityscapesScripts' helpers/labels.py (the 19 classes with a trainId, their colours and
the labelId -> trainId table); ADE20K from the SceneParsing benchmark's objectInfo150 (the order MMSegmentation's
ade.py uses, with its palette); VOC from the devkit (21 classes, the bit-interleaved colormap of VOCcode).
"""

from __future__ import annotations

import numpy as np

from seglab.constants import IGNORE_INDEX
from seglab.data.classes import INVALID, ClassSet, default_colors

# Cityscapes: (name, labelId, colour) of the 19 training classes, in trainId order 0-18.
_CITYSCAPES = (
    ("road", 7, (128, 64, 128)), ("sidewalk", 8, (244, 35, 232)), ("building", 11, (70, 70, 70)),
    ("wall", 12, (102, 102, 156)), ("fence", 13, (190, 153, 153)), ("pole", 17, (153, 153, 153)),
    ("traffic light", 19, (250, 170, 30)), ("traffic sign", 20, (220, 220, 0)),
    ("vegetation", 21, (107, 142, 35)), ("terrain", 22, (152, 251, 152)), ("sky", 23, (70, 130, 180)),
    ("person", 24, (220, 20, 60)), ("rider", 25, (255, 0, 0)), ("car", 26, (0, 0, 142)),
    ("truck", 27, (0, 0, 70)), ("bus", 28, (0, 60, 100)), ("train", 31, (0, 80, 100)),
    ("motorcycle", 32, (0, 0, 230)), ("bicycle", 33, (119, 11, 32)),
)
CITYSCAPES19 = ClassSet(tuple(n for n, _, _ in _CITYSCAPES), tuple(c for _, _, c in _CITYSCAPES))
# labelId -> trainId of the training classes; every other labelId (0-33, e.g. 0 unlabeled, 6 ground,
# 9 parking, 10 rail track, 14 guard rail, 29 caravan, 30 trailer) is void, as -1 (license plate) is.
CITYSCAPES_TRAIN_IDS = {label_id: train_id for train_id, (_, label_id, _) in enumerate(_CITYSCAPES)}
CITYSCAPES_LABEL_IDS = 34  # labelIds 0-33 are defined; labelIds PNGs hold nothing else (255 aside)


def cityscapes_label_id_lut() -> np.ndarray:
    """LUT for ``*_gtFine_labelIds.png``: the 19 training labelIds -> 0-18, other labelIds (and 255) void."""
    lut = np.full(256, INVALID, np.int16)
    lut[:CITYSCAPES_LABEL_IDS] = IGNORE_INDEX
    lut[IGNORE_INDEX] = IGNORE_INDEX
    for label_id, train_id in CITYSCAPES_TRAIN_IDS.items():
        lut[label_id] = train_id
    return lut


# ADE20K (ADEChallengeData2016): the 150 SceneParsing classes; raw k in the annotations is class k-1, 0 is void.
_ADE20K_NAMES = (
    "wall|building|sky|floor|tree|ceiling|road|bed|windowpane|grass|cabinet|sidewalk|person|earth|door|"
    "table|mountain|plant|curtain|chair|car|water|painting|sofa|shelf|house|sea|mirror|rug|field|"
    "armchair|seat|fence|desk|rock|wardrobe|lamp|bathtub|railing|cushion|base|box|column|signboard|"
    "chest of drawers|counter|sand|sink|skyscraper|fireplace|refrigerator|grandstand|path|stairs|runway|"
    "case|pool table|pillow|screen door|stairway|river|bridge|bookcase|blind|coffee table|toilet|flower|"
    "book|hill|bench|countertop|stove|palm|kitchen island|computer|swivel chair|boat|bar|arcade machine|"
    "hovel|bus|towel|light|truck|tower|chandelier|awning|streetlight|booth|television receiver|airplane|"
    "dirt track|apparel|pole|land|bannister|escalator|ottoman|bottle|buffet|poster|stage|van|ship|"
    "fountain|conveyer belt|canopy|washer|plaything|swimming pool|stool|barrel|basket|waterfall|tent|bag|"
    "minibike|cradle|oven|ball|food|step|tank|trade name|microwave|pot|animal|bicycle|lake|dishwasher|"
    "screen|blanket|sculpture|hood|sconce|vase|traffic light|tray|ashcan|fan|pier|crt screen|plate|"
    "monitor|bulletin board|shower|radiator|glass|clock|flag"
)
_ADE20K_RGB = (
    120, 120, 120, 180, 120, 120, 6, 230, 230, 80, 50, 50, 4, 200, 3, 120, 120, 80, 140, 140, 140,
    204, 5, 255, 230, 230, 230, 4, 250, 7, 224, 5, 255, 235, 255, 7, 150, 5, 61, 120, 120, 70,
    8, 255, 51, 255, 6, 82, 143, 255, 140, 204, 255, 4, 255, 51, 7, 204, 70, 3, 0, 102, 200,
    61, 230, 250, 255, 6, 51, 11, 102, 255, 255, 7, 71, 255, 9, 224, 9, 7, 230, 220, 220, 220,
    255, 9, 92, 112, 9, 255, 8, 255, 214, 7, 255, 224, 255, 184, 6, 10, 255, 71, 255, 41, 10,
    7, 255, 255, 224, 255, 8, 102, 8, 255, 255, 61, 6, 255, 194, 7, 255, 122, 8, 0, 255, 20,
    255, 8, 41, 255, 5, 153, 6, 51, 255, 235, 12, 255, 160, 150, 20, 0, 163, 255, 140, 140, 140,
    250, 10, 15, 20, 255, 0, 31, 255, 0, 255, 31, 0, 255, 224, 0, 153, 255, 0, 0, 0, 255,
    255, 71, 0, 0, 235, 255, 0, 173, 255, 31, 0, 255, 11, 200, 200, 255, 82, 0, 0, 255, 245,
    0, 61, 255, 0, 255, 112, 0, 255, 133, 255, 0, 0, 255, 163, 0, 255, 102, 0, 194, 255, 0,
    0, 143, 255, 51, 255, 0, 0, 82, 255, 0, 255, 41, 0, 255, 173, 10, 0, 255, 173, 255, 0,
    0, 255, 153, 255, 92, 0, 255, 0, 255, 255, 0, 245, 255, 0, 102, 255, 173, 0, 255, 0, 20,
    255, 184, 184, 0, 31, 255, 0, 255, 61, 0, 71, 255, 255, 0, 204, 0, 255, 194, 0, 255, 82,
    0, 10, 255, 0, 112, 255, 51, 0, 255, 0, 194, 255, 0, 122, 255, 0, 255, 163, 255, 153, 0,
    0, 255, 10, 255, 112, 0, 143, 255, 0, 82, 0, 255, 163, 255, 0, 255, 235, 0, 8, 184, 170,
    133, 0, 255, 0, 255, 92, 184, 0, 255, 255, 0, 31, 0, 184, 255, 0, 214, 255, 255, 0, 112,
    92, 255, 0, 0, 224, 255, 112, 224, 255, 70, 184, 160, 163, 0, 255, 153, 0, 255, 71, 255, 0,
    255, 0, 163, 255, 204, 0, 255, 0, 143, 0, 255, 235, 133, 255, 0, 255, 0, 235, 245, 0, 255,
    255, 0, 122, 255, 245, 0, 10, 190, 212, 214, 255, 0, 0, 204, 255, 20, 0, 255, 255, 255, 0,
    0, 153, 255, 0, 41, 255, 0, 255, 204, 41, 0, 255, 41, 255, 0, 173, 0, 255, 0, 245, 255,
    71, 0, 255, 122, 0, 255, 0, 255, 184, 0, 92, 255, 184, 255, 0, 0, 133, 255, 255, 214, 0,
    25, 194, 194, 102, 255, 0, 92, 0, 255,
)
ADE20K150 = ClassSet(tuple("".join(_ADE20K_NAMES).split("|")),
                     tuple(tuple(_ADE20K_RGB[i:i + 3]) for i in range(0, len(_ADE20K_RGB), 3)))


def ade20k_lut() -> np.ndarray:
    """LUT for ADE20K annotations: raw 0 (other/unlabelled) void, raw k (1-150) -> class k-1, 255 void."""
    lut = np.full(256, INVALID, np.int16)
    lut[0] = lut[IGNORE_INDEX] = IGNORE_INDEX
    lut[1:ADE20K150.num_classes + 1] = np.arange(ADE20K150.num_classes)
    return lut


# PASCAL VOC 2012: background and the 20 object classes; palette index = class, 255 (object borders) void.
VOC21 = ClassSet(
    names=("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
           "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
           "tvmonitor"),
    colors=((0, 0, 0), *default_colors(20)),  # VOCcode's colormap: index i's bits spread over r, g, b
)

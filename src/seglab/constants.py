"""Constants shared by every module: one place, so padding, collate, loss and metrics agree."""

VERSION = "0.1.0"  # seglab.__version__, recorded in every run and export

# Label value for pixels that are never learned from or scored (CamVid "void", padding, unknown colours).
IGNORE_INDEX = 255

# Spatial size every model input must be divisible by (five stride-2 stages in the encoders).
SIZE_DIVISOR = 32

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

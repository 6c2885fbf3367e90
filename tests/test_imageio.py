"""The one image reader: EXIF orientation turns images and label masks alike, so pairs stay aligned and
training, evaluation and prediction see the same upright pixels."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageOps

from seglab.data import SegmentationDataset, open_source
from seglab.data.dataset import read_mask
from seglab.errors import SeglabError
from seglab.imageio import EXIF_ORIENTATION, read_image, upright

UPRIGHT = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)  # (H, W, 3), every pixel distinct


def tagged(a: np.ndarray, orientation: int) -> Image.Image:
    """A PIL image holding ``a`` as stored pixels, with an EXIF orientation tag."""
    img = Image.fromarray(a)
    exif = img.getexif()
    exif[EXIF_ORIENTATION] = orientation
    img.info["exif"] = exif.tobytes()
    return img


def save_tagged(path, a: np.ndarray, orientation: int) -> None:
    img = tagged(a, orientation)
    img.save(path, exif=img.info["exif"])


def stored_sideways(a: np.ndarray) -> np.ndarray:
    """What a camera writes for an upright view ``a`` with orientation 6: the view turned 90 degrees
    counter-clockwise (orientation 6 says: turn clockwise to show it)."""
    return np.rot90(a, 1).copy()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_upright_turns_as_pillow_does(orientation):
    stored = stored_sideways(UPRIGHT)  # (6, 4, 3): not square, so a wrong turn changes the shape
    expected = np.asarray(ImageOps.exif_transpose(tagged(stored, orientation)))
    np.testing.assert_array_equal(upright(stored, orientation), expected)
    np.testing.assert_array_equal(upright(stored[..., 0], orientation), expected[..., 0])  # masks: (H, W)


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_read_image_is_upright_by_the_files_own_tag(tmp_path, suffix):
    path = tmp_path / f"phone{suffix}"
    smooth = np.repeat(np.repeat(UPRIGHT, 8, axis=0), 8, axis=1)  # blocks survive JPEG roughly
    save_tagged(path, stored_sideways(smooth), 6)
    got = read_image(path)
    assert got.shape == smooth.shape
    if suffix == ".png":
        np.testing.assert_array_equal(got, smooth)
    else:
        assert np.abs(got.astype(int) - smooth).mean() < 4  # lossy, but the right way up


def test_mask_without_tag_stays_aligned_with_its_turned_photo(tiny_camvid):
    """A phone photo stored sideways, annotated on its upright view (masks carry no tag): the pair
    lines up, pixel for pixel, only because the photo is turned."""
    image_path = tiny_camvid / "train" / "0001TP_train000.png"
    mask_path = tiny_camvid / "trainannot" / "0001TP_train000.png"
    view = np.asarray(Image.open(image_path).convert("RGB"))  # (64, 96, 3), the upright view
    labels = (np.arange(64 * 96).reshape(64, 96) % 11).astype(np.uint8)  # every position tells its place
    Image.fromarray(labels).save(mask_path)
    save_tagged(image_path, stored_sideways(view), 6)
    src = open_source(tiny_camvid)
    image, mask = SegmentationDataset(src.split("train")[:1], src.lut, 11).decoded(0)
    np.testing.assert_array_equal(image, view)
    np.testing.assert_array_equal(mask, labels)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_tagged_mask_turns_with_the_same_rule(tmp_path, orientation):
    labels = (np.arange(4 * 6).reshape(4, 6) % 11).astype(np.uint8)
    save_tagged(tmp_path / "image.png", np.dstack([labels] * 3), orientation)
    img = tagged(labels, orientation)
    img.save(tmp_path / "mask.png", exif=img.info["exif"])
    np.testing.assert_array_equal(read_mask(tmp_path / "mask.png"), read_image(tmp_path / "image.png")[..., 0])
    assert read_mask(tmp_path / "mask.png").shape == ((6, 4) if orientation in (6, 8) else (4, 6))


def test_mask_drawn_on_unturned_pixels_says_why(tiny_camvid):
    image_path = tiny_camvid / "train" / "0001TP_train000.png"
    save_tagged(image_path, np.asarray(Image.open(image_path).convert("RGB")), 6)  # now shows as 96x64
    src = open_source(tiny_camvid)
    with pytest.raises(SeglabError, match="mask is 64x96 but its image .* is 96x64.*EXIF orientation"):
        SegmentationDataset(src.split("train")[:1], src.lut, 11).decoded(0)


@pytest.mark.parametrize("content, reason", [(b"not an image", "not an image format"),
                                             (None, "truncated or corrupt")])
def test_unreadable_files_are_one_line_errors(tmp_path, content, reason):
    path = tmp_path / "x.png"
    if content is None:
        Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 7).save(path)
        content = path.read_bytes()[:-40]
    path.write_bytes(content)
    with pytest.raises(SeglabError, match=f"x.png: cannot read image \\({reason}") as err:
        read_image(path)
    assert "\n" not in str(err.value)

"""The folder-safe-name rule: today's names unchanged, unsafe ones made safe, user names checked by it."""

import unicodedata

import pytest

from seglab.config import load_config
from seglab.naming import NAME_PROBLEM, name_problem, safe_name

# Names run folders and metrics files on users' disks have: they must come out as they always did.
KEPT = [
    ("unet:resnet34", "unet-resnet34"),
    ("fpn:efficientnet-lite2:64", "fpn-efficientnet-lite2-64"),
    ("segformer:tu-convnext_tiny.fb_in1k", "segformer-tu-convnext_tiny.fb_in1k"),
    ("unet:resnet34_192x256_bs8_3ep", "unet-resnet34_192x256_bs8_3ep"),
    ("scratch:simplesegnet_64x64_bs2_12steps", "scratch-simplesegnet_64x64_bs2_12steps"),
    ("fpn:efficientnet-lite0_384x480_bs8_60m", "fpn-efficientnet-lite0_384x480_bs8_60m"),
    ("ce+median-frequency-s1", "ce+median-frequency-s1"),
    ("camvid", "camvid"),
    ("données", "données"),
]


@pytest.mark.parametrize("text,name", KEPT)
def test_todays_names_are_kept(text, name):
    assert safe_name(text) == name
    assert name_problem(name) is None  # and they follow the rule they were made by


@pytest.mark.parametrize("mode,tag", [("none", "none"), ("flip", "flip"), ("flip+scales", "flip+scales"),
                                      ("flip+scales:1,2", "flip+scales=1,2"),
                                      ("flip+scales:0.75,1,1.5,2", "flip+scales=0.75,1,1.5,2")])
def test_tta_tags_are_kept(mode, tag):
    """evaluate's metrics_<split>~tta-<tag>.json: colons as '=', the scales' commas kept."""
    assert safe_name(mode, colon="=", keep=",") == tag


@pytest.mark.parametrize("text,name", [
    ("../../etc", ".._.._etc"),  # no separator survives: one component, inside its parent
    ("a/b\\c", "a_b_c"),
    ("..", "_"), (".", "_"), ("...", "_"), ("", "_"), ("   ", "_"),
    ("unet:resnet34_192x256_bs8_00:30:00", "unet-resnet34_192x256_bs8_00-30-00"),
    ("my data", "my_data"),
    ("my   data (copy)", "my_data_copy_"),
    ('a*b?c"d<e>f|g', "a_b_c_d_e_f_g"),
    ("tab\there\nnewline\x00nul", "tab_here_newline_nul"),
    ("  padded  ", "padded"),
    ("emoji🙂name", "emoji_name"),
    ("日本語データ", "日本語データ"),
    ("a,b=c~d@e", "a_b_c_d_e"),
])
def test_unsafe_names_are_made_safe(text, name):
    assert safe_name(text) == name
    assert name_problem(name) is None
    assert "/" not in name and "\\" not in name and ":" not in name


def test_unicode_is_one_spelling():
    """macOS gives é as e + a combining accent; the name is the same bytes as the one-code-point spelling."""
    decomposed = unicodedata.normalize("NFD", "café")
    assert decomposed != "café" and safe_name(decomposed) == "café"


def test_safe_names_are_stable():
    for text, _ in KEPT:
        assert safe_name(safe_name(text)) == safe_name(text)
    assert safe_name(safe_name("a b/c:..")) == safe_name("a b/c:..") == "a_b_c-.."


def test_only_storable_separators():
    with pytest.raises(ValueError):
        safe_name("unet:resnet34", colon="/")
    with pytest.raises(ValueError):
        safe_name("a b", keep=" ")


@pytest.mark.parametrize("name", ["run1", "ce+median-frequency", "lr-0.001", "scales-0.5-2", "a.b", "_", "ünïcode"])
def test_user_names_that_follow_the_rule(name):
    assert name_problem(name) is None and safe_name(name) == name


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../x", "a b", "a:b", "a\\b", "x,y", "a=b", "nul\x00"])
def test_user_names_refused(name):
    assert name_problem(name) == NAME_PROBLEM


def test_run_name_uses_the_rule():
    cfg = load_config(None, {"model.spec": "fpn:efficientnet-lite2:64", "data.size": "192x256",
                             "data.batch_size": 8, "train.budget": "00:30:00"})
    assert cfg.run_name() == "fpn-efficientnet-lite2-64_192x256_bs8_00-30-00"

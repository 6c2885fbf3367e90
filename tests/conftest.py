"""Shared fixtures: tiny synthetic datasets on disk (made by fakes.py), so every test runs offline."""

from __future__ import annotations

import os
from pathlib import Path

# Tests never touch the network: hub look-ups fail at once instead of trying to connect.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
from fakes import make_camvid, make_camvid32


@pytest.fixture
def tiny_camvid(tmp_path) -> Path:
    return make_camvid(tmp_path / "camvid")


@pytest.fixture
def tiny_camvid32(tmp_path) -> Path:
    return make_camvid32(tmp_path / "camvid32")

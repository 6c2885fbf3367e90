"""Folder-safe names: the one rule for every file or folder name that holds a user's value.

Run folders (``unet-resnet34_192x256_bs8_3ep``), study folders, and the variant tags of metrics files
(``metrics_test~tta-flip+scales=1,2.json``, ``metrics_test@<data>-<fingerprint>.json``) are named after model
specs, durations, tta modes, data folders and names users choose. Such a name must be one path component
that every common file system stores (no ``/``, ``\\`` or ``:``, the last of which Windows refuses, nor ``..``)
and that is the same on every machine, so a run folder made on one is found again on another.

The rule: a name holds letters and digits of any script, ``_``, ``.``, ``+`` and ``-``, and is not dots alone.
A name the user chooses (``--name``, a study's or a study run's name) is checked against it and refused;
a name seglab builds from values goes through :func:`safe_name`, which keeps every name that already follows
the rule unchanged (so existing run folders keep their names) and turns anything else into one that does.
"""

from __future__ import annotations

import re
import unicodedata

NAME_CHARS = r"\w.+\-"  # \w: letters, digits and _ of any script; "-" escaped: more follow it in classes
NAME_PROBLEM = "may only hold letters, digits, '.', '_', '+', '-'"
_NAME = re.compile(rf"[{NAME_CHARS}]+")


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a folder (to follow the name it is about), or None when it can."""
    if not _NAME.fullmatch(name) or set(name) == {"."}:
        return NAME_PROBLEM
    return None


def safe_name(text: str, colon: str = "-", keep: str = "") -> str:
    """``text`` as a folder-safe name: ``unet:resnet34`` -> ``unet-resnet34``.

    The text is stripped and NFC-normalised (macOS spells é in two code points, other systems in one, so
    the same name is the same bytes everywhere). Each ``:`` becomes ``colon``, which keeps the parts of a
    model spec or a tta mode apart (evaluate's tta tags write ``flip+scales=1,1.5``); each run of other
    characters outside the rule, and outside ``keep`` (characters a caller's names have always held, such
    as the commas of a tta mode's scales), becomes ``_``. A name of dots alone (``..``) becomes ``_``.
    """
    if not set(colon + keep) <= set(".+-_,=~@"):
        raise ValueError(f"colon={colon!r}, keep={keep!r}: only characters every file system stores")
    text = unicodedata.normalize("NFC", str(text).strip())
    text = re.sub(rf"[^{NAME_CHARS}:{re.escape(keep)}]+", "_", text).replace(":", colon)
    return "_" if set(text) <= {"."} else text

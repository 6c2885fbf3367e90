"""The project's own promises: README's commands are the ones CI runs."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL)


def test_ci_runs_readme_setup_and_test_commands_word_for_word():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    setup, tests = bash_blocks(readme)[0], bash_blocks(readme)[1]
    install = setup.strip().splitlines()[0]
    assert install in ci.splitlines()
    assert tests.strip() in ci.splitlines()
    assert "seglab study" in setup  # the main job


def test_builtin_studies_are_packaged():
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "studies/*.yaml" in config["tool"]["setuptools"]["package-data"]["seglab"]
    assert list((ROOT / "src" / "seglab" / "studies").glob("*.yaml"))

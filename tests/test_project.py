"""The project's own promises: README's commands are the ones CI runs, README stays short, and the docs
site's pages, packages and generated CLI reference are what CI builds."""

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


def test_readme_is_short():
    """README is the front door; everything longer lives in docs/."""
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; move detail into docs/"


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_readme_setup_installs_what_the_docs_build_needs():
    """CI builds the docs with the venv of README's one install command, so dev must carry the docs pins."""
    extras = _pyproject()["project"]["optional-dependencies"]
    assert extras["docs"] and set(extras["docs"]) <= set(extras["dev"])
    assert all("==" in pin for pin in extras["docs"])  # pinned: a new release cannot break the strict build
    assert ".venv/bin/mkdocs build --strict" in (ROOT / ".ci" / "run").read_text()


def test_docs_nav_names_existing_pages():
    yaml = pytest.importorskip("yaml")

    def pages(node):
        if isinstance(node, str):
            yield node
        elif isinstance(node, list):
            for item in node:
                yield from pages(item)
        elif isinstance(node, dict):
            for value in node.values():
                yield from pages(value)

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    nav = list(pages(config["nav"]))
    missing = [p for p in nav if not (ROOT / "docs" / p).is_file()]
    assert nav and not missing
    benchmarks = (ROOT / "docs" / "benchmarks.md").read_text()
    undescribed = [f.name for f in (ROOT / "benchmarks").glob("*.json") if f"benchmarks/{f.name}" not in benchmarks]
    assert not undescribed, f"docs/benchmarks.md does not describe {undescribed}"


def test_cli_reference_lists_every_command():
    """The docs hook walks the typer app; a command it cannot render would break the site."""
    import importlib.util

    import typer

    from seglab.cli import app

    spec = importlib.util.spec_from_file_location("cli_reference", ROOT / "docs" / "hooks" / "cli_reference.py")
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    text = hook.cli_markdown()
    root = typer.main.get_command(app)
    for name, command in root.commands.items():
        assert f"## seglab {name}\n" in text
        for sub in getattr(command, "commands", {}):
            assert f"## seglab {name} {sub}\n" in text
    assert "--preset" in text and "One of:" in text  # train's options, with their allowed values
    assert hook.on_page_markdown(f"x\n{hook.MARKER}\n", None, None, None).startswith("x\n## seglab\n")


def test_builtin_studies_are_packaged():
    config = _pyproject()
    assert "studies/*.yaml" in config["tool"]["setuptools"]["package-data"]["seglab"]
    assert list((ROOT / "src" / "seglab" / "studies").glob("*.yaml"))

"""Docs and packaging are tested like code: the README documents every command and every stable
`why --json` key, and the Dockerfile copies only paths that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from schoolgate import cli
from schoolgate.cli.why import WHY_KEYS
from schoolgate.config.loader import _Checker, load_config

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")


def test_readme_opens_with_the_two_commands():
    first_block = README.split("```", 2)[1]
    assert "make run" in first_block and "make test" in first_block


def _subcommands() -> list[str]:
    parser = cli.parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    return sorted(sub.choices)


@pytest.mark.parametrize("command", _subcommands())
def test_every_command_has_a_readme_section(command):
    assert re.search(rf"^### `schoolgate {command}\b", README, re.M), (
        f"README.md has no '### `schoolgate {command} ...`' section"
    )


@pytest.mark.parametrize("key", WHY_KEYS)
def test_every_why_json_key_is_documented(key):
    assert re.search(rf"^\| `{key}` \|", README, re.M), f"README.md does not document why key {key!r}"


def test_every_config_key_is_documented():
    from schoolgate.config.loader import _Checker

    for key in _Checker.TOP:
        assert f"`{key}" in README, f"README.md does not document config key {key!r}"


def test_example_config_mentions_every_top_level_key():
    example = (ROOT / "config" / "schoolgate.yaml").read_text(encoding="utf-8")
    from schoolgate.config.loader import _Checker

    for key in _Checker.TOP:
        assert re.search(rf"^#? ?{key}:", example, re.M), f"example config lacks {key!r}"


def _dockerfile_copies() -> list[str]:
    sources = []
    for line in DOCKERFILE.splitlines():
        if line.startswith("COPY "):
            parts = [p for p in line.split()[1:] if not p.startswith("--")]
            sources.extend(parts[:-1])
    return sources


def test_dockerfile_copies_the_data_folders():
    copied = {s.rstrip("/") for s in _dockerfile_copies()}
    assert {"config", "categories", "keywords", "alerts", "templates", "proxy",
            "pyproject.toml"} <= copied


@pytest.mark.parametrize("source", _dockerfile_copies())
def test_every_dockerfile_copy_source_exists(source):
    assert (ROOT / source).exists(), f"Dockerfile copies {source}, which is not in the repository"


def test_dockerfile_matches_the_example_config():
    config = load_config(ROOT / "config" / "schoolgate.yaml")
    assert re.search(r"^FROM python:3\.12-slim\b", DOCKERFILE, re.M)
    assert re.search(r"^USER (?!root)\w+", DOCKERFILE, re.M), "the image must not run as root"
    exposed = {int(p) for line in re.findall(r"^EXPOSE (.+)$", DOCKERFILE, re.M) for p in line.split()}
    assert {config.listen.port, config.metrics.port} <= exposed
    # The CMD's config is the copied example, and the volume is the data directory it names.
    assert '"/app/config/schoolgate.yaml"' in DOCKERFILE
    data_dir = config.data_dir.relative_to(ROOT)
    assert f'VOLUME ["/app/{data_dir}"]' in DOCKERFILE
    assert f"-v schoolgate-data:/app/{data_dir}" in README


@pytest.mark.parametrize("key", _Checker.GROUP_KEYS)
def test_every_group_key_is_documented_and_in_the_example(key):
    # Each group setting has a row in the README's configuration table or list...
    assert re.search(rf"`groups\.<name>\.{key}`|`groups\.<name>`[^\n]*`{key}`|, `{key}`", README), (
        f"README.md does not document groups.<name>.{key}")
    # ...and the example config shows it (set on a group, or in the commented defaults).
    example = (ROOT / "config" / "schoolgate.yaml").read_text(encoding="utf-8")
    assert re.search(rf"^#?\s+{key}:", example, re.M), f"example config never shows {key!r}"


@pytest.mark.parametrize("key", _Checker.IDENTITY_KEYS)
def test_every_identity_key_is_documented_and_in_the_example(key):
    assert f"`identity.{key}`" in README or f"`{key}`" in README, f"README lacks identity.{key}"
    example = (ROOT / "config" / "schoolgate.yaml").read_text(encoding="utf-8")
    assert re.search(rf"^\s*#?\s*{key}:", example, re.M), f"example config never shows {key!r}"

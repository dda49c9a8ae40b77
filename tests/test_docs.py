"""Docs and packaging are tested like code: the README documents every command and every stable
`why --json` key, and the Dockerfile copies only paths that exist."""

from __future__ import annotations

import hashlib
import re
import tomllib
from importlib.metadata import metadata, version
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

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


# ---------------------------------------------------------------------------------------------
# The licence, and what pyproject.toml and the comments say about the package


PYPROJECT_TEXT = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
PYPROJECT = tomllib.loads(PYPROJECT_TEXT)

#: SHA-256 of the FSF's text of the GNU GPL version 3 (https://www.gnu.org/licenses/gpl-3.0.txt).
GPL3_SHA256 = "3972dc9744f6499f0f9b2dbf76696f2ae7ad8af9b23dde66d6af86c9dfb36986"


def test_the_licence_file_is_the_gpl_version_3_unchanged():
    text = (ROOT / "LICENSE").read_bytes()
    assert text.startswith(b"                    GNU GENERAL PUBLIC LICENSE\n"
                           b"                       Version 3, 29 June 2007\n")
    assert hashlib.sha256(text).hexdigest() == GPL3_SHA256


def test_pyproject_names_the_licence_as_an_spdx_expression():
    project = PYPROJECT["project"]
    assert project["license"] == "GPL-3.0-or-later"
    assert project["license-files"] == ["LICENSE"]
    # PEP 639: with an expression, "License ::" classifiers are refused by the build.
    assert not [c for c in project.get("classifiers", ()) if c.startswith("License ::")]
    # The expression needs a setuptools that reads it.
    (backend,) = [r for r in PYPROJECT["build-system"]["requires"] if r.startswith("setuptools")]
    assert Version("77") in SpecifierSet(backend.removeprefix("setuptools"))
    assert Version("76.9") not in SpecifierSet(backend.removeprefix("setuptools"))


def test_the_installed_package_carries_the_licence():
    # What pip, a wheel and PyPI read: the metadata the build wrote (make reinstalls .venv when
    # pyproject.toml changes).
    meta = metadata("schoolgate")
    assert meta["License-Expression"] == "GPL-3.0-or-later"
    assert meta.get_all("License-File") == ["LICENSE"]


def _requirement_comments() -> dict[str, tuple[SpecifierSet, str]]:
    """Each dependency of pyproject.toml: its specifier and the comment lines just above it."""
    out = {}
    comment: list[str] = []
    for line in PYPROJECT_TEXT.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comment.append(stripped.lstrip("# "))
            continue
        m = re.fullmatch(r'"([A-Za-z0-9_.\[\]-]+?)((?:[<>=!~]=?|===)[^"]*)?",', stripped)
        if m:
            out[m[1].lower()] = (SpecifierSet(m[2] or ""), " ".join(comment))
        comment = []
    return out


@pytest.mark.parametrize("name", [n for n, (spec, _) in _requirement_comments().items()
                                  if any(s.operator == "<" for s in spec)])
def test_an_upper_bound_says_what_it_allows_and_why(name):
    spec, comment = _requirement_comments()[name]
    assert comment, f"{name}{spec} has an upper bound and no comment saying why"
    for s in spec:
        if s.operator in ("<", ">="):
            assert s.version in comment, f"the comment on {name}{spec} never names {s.version}"
    # The modules it names as the reason exist.
    for path in re.findall(r"[\w/]+\.py", comment):
        assert (ROOT / "proxy" / "schoolgate" / path).exists(), path
    installed = Version(version(name))
    assert installed in spec, f"installed {name} {installed} is outside {spec}"


_THRESHOLD_TEXTS = [ROOT / "README.md", ROOT / "keywords" / "README.md",
                    ROOT / "config" / "schoolgate.yaml",
                    *sorted((ROOT / "proxy" / "schoolgate").rglob("*.py"))]


@pytest.mark.parametrize("path", _THRESHOLD_TEXTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_keyword_threshold_is_described_as_the_score_that_blocks_when_reached(path):
    # The gateway blocks at the threshold (policy: `score >= keyword_threshold`; with the
    # default 10 one high-severity phrase, score 10, blocks: tests/unit/policy/test_monitoring.py).
    # No comment or document may say it blocks only above it.
    text = path.read_text(encoding="utf-8")
    for m in re.finditer(r"keyword_threshold", text):
        near = " ".join(text[max(0, m.start() - 200): m.end() + 250].split())
        assert not re.search(r"\babove which\b|\bexceeds?\b|\bgreater than\b|\bover the\b",
                             near), f"{path}: {near}"


def test_the_image_copies_what_the_package_build_reads_before_it_builds():
    # `pip install .` in the image reads pyproject.toml, its readme and its license-files; a
    # file the build names but the image has not copied yet fails the build.
    before_build = DOCKERFILE.split("RUN pip install .", 1)[0]
    copied = {s.rstrip("/") for line in before_build.splitlines() if line.startswith("COPY ")
              for s in [p for p in line.split()[1:] if not p.startswith("--")][:-1]}
    project = PYPROJECT["project"]
    assert {"pyproject.toml", project["readme"], *project["license-files"]} <= copied


# ---------------------------------------------------------------------------------------------
# The README's contents list and its summary for a head of IT


def _section(title: str) -> str:
    return README.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_contents_list_every_section_and_every_link_leads_somewhere():
    headings = re.findall(r"^## (.+)$", README, re.M)
    contents = _section("Contents")
    links = re.findall(r"\]\(#([^)]+)\)", contents)
    listed = set(links)
    missing = [h for h in headings if h != "Contents" and _anchor(h) not in listed]
    assert not missing, f"the contents list leaves out {missing}"
    anchors = {_anchor(h) for h in re.findall(r"^#{2,3} (.+)$", README, re.M)}
    for link in re.findall(r"\]\(#([^)]+)\)", README):
        assert link in anchors, f"README links to #{link}, which no heading has"
    # Listed in the order they come.
    order = [_anchor(h) for h in headings if _anchor(h) in listed]
    assert [a for a in links if a in order] == order


def test_the_contents_name_every_command():
    named = set(re.findall(r"`([a-z][a-z ]*)`", _section("Contents")))
    for command in _subcommands():
        assert command in named or any(n.startswith(command) for n in named) or (
            command in ("unblock", "unallow")), f"the contents list does not name {command}"


def test_at_a_glance_covers_what_a_head_of_it_asks_in_a_minute():
    summary = _section("At a glance")
    assert len(summary.split()) <= 400, "a minute's reading"
    for topic in ("**Blocks**", "**Monitors**", "**Alerts**", "**Reports**", "**Scale**"):
        assert topic in summary


def test_at_a_glance_figures_are_the_measured_ones():
    # The summary's figures are the README's own: a rate ("... a second") is one the Performance
    # or Workers text measured; any other number is stated where its section explains it.
    summary = _section("At a glance")
    measured = _section("Performance") + README.split("**Workers.**", 1)[1].split("\n### ", 1)[0]
    elsewhere = README.replace(summary, "")
    number = r"(?<![\w.-])\d[\d,]*(?:\.\d+)?(?![\w.-])"
    rates = re.findall(rf"({number})[^\d.;()]{{0,60}}? a second", summary)
    assert {"1,300", "270", "1,000"} <= set(rates)  # the collector works
    for figure in re.findall(number, summary):
        if figure == "3.12":  # the Python version
            continue
        where = measured if figure in rates else elsewhere
        assert re.search(rf"(?<![\w.,-]){re.escape(figure)}(?![\w,-])", where), (
            f"At a glance says {figure}, which the README measures or states nowhere else")

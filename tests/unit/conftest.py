"""Shared fixtures for the unit tests: the sample school (sample_school.py) written into
`tmp_path` and loaded. Nothing here reads or writes outside `tmp_path`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from sample_school import BASE_CONFIG, BASE_LISTS
from schoolgate.config.loader import load_config
from schoolgate.config.model import Config

# Importing mitmproxy 12 imports libraries that call their own dependencies' deprecated names
# (mitmproxy -> pyparsing's setParseAction/parseAll, ldap3 -> pyasn1's tagMap), and those raise
# DeprecationWarning at import time. They are not ours to fix; import mitmproxy once here with
# only import-time deprecation warnings silenced, so `filterwarnings = error` still catches every
# warning raised while a test runs.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import mitmproxy.test.taddons  # noqa: F401
    import mitmproxy.test.tflow  # noqa: F401

WriteConfig = Callable[..., Path]


@pytest.fixture
def write_config(tmp_path: Path) -> WriteConfig:
    """Write a config (default `BASE_CONFIG`) and its list files (default `BASE_LISTS`, under
    `lists/`) into `tmp_path`; return the config's path."""

    def write(text: str = BASE_CONFIG, lists: dict[str, str] | None = None) -> Path:
        folder = tmp_path / "lists"
        folder.mkdir(exist_ok=True)
        for name, content in (BASE_LISTS if lists is None else lists).items():
            (folder / name).write_text(content, encoding="utf-8")
        path = tmp_path / "schoolgate.yaml"
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def make_config(write_config: WriteConfig) -> Callable[..., Config]:
    """Like `write_config`, but return the loaded `Config`."""

    def make(text: str = BASE_CONFIG, lists: dict[str, str] | None = None) -> Config:
        return load_config(write_config(text, lists))

    return make


@pytest.fixture
def config(make_config: Callable[..., Config]) -> Config:
    """`BASE_CONFIG` with `BASE_LISTS`, loaded."""
    return make_config()

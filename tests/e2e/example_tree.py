"""A stand-in for a fresh clone, for running the commands the README shows as a newcomer would:
the example `config/` copied (so a test may change it), the folders it reads (`categories/`,
`keywords/`, `alerts/`, `templates/`) linked from the checkout, and an empty `data/` of its own.
Nothing in the checkout's own `data/` is read or written."""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

LINKED = ("categories", "keywords", "alerts", "templates")


def example_tree(directory: Path) -> Path:
    """Lay the tree out in `directory`; return its example config's path."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "config", directory / "config")
    for name in LINKED:
        (directory / name).symlink_to(ROOT / name, target_is_directory=True)
    return directory / "config" / "schoolgate.yaml"

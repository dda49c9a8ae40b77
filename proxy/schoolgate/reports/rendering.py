"""What every report output shares: the template environment (escaping on, unknown names an
error), spreadsheet-safe CSV cells, and files only their owner can read."""

from __future__ import annotations

import functools
from pathlib import Path

import jinja2

from ..files import write_atomically

__all__ = ["safe_cell", "template", "write_private"]


@functools.cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("schoolgate", "templates"),
        # Search terms and URLs are typed by pupils and strangers: escape everything, always.
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def template(name: str) -> jinja2.Template:
    return _environment().get_template(name)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> object:
    """A CSV cell that Excel or LibreOffice will show as text, never run: a term such as
    `=HYPERLINK(...)` gets a leading apostrophe (OWASP's advice for CSV injection)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return "" if value is None else value


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` (mode 0600), replacing it whole: a reader never sees half a report
    and a re-run replaces the old one."""
    write_atomically(path, text)

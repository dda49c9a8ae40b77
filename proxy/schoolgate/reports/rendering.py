"""What every report output shares beside its template (`schoolgate.pages`) and its file
(`schoolgate.files.write_atomically`, owner only): spreadsheet-safe CSV cells."""

from __future__ import annotations

__all__ = ["safe_cell"]


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> object:
    """A CSV cell that Excel or LibreOffice will show as text, never run: a term such as
    `=HYPERLINK(...)` gets a leading apostrophe (OWASP's advice for CSV injection)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return "" if value is None else value

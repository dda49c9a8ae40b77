"""Read the identity files a technician keeps (IP map, devices, user groups as CSV; htpasswd as
text); what their rows say is checked by `schoolgate.identify`.

A bad row never stops a load: it is reported as ``file:line: what is wrong; line skipped`` and the
rest of the file still counts. A file that cannot be used at all (missing, unreadable, no header)
raises `IdentityFileError`, and whoever holds the previous contents keeps using them.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

from ..identify.maps import FileSummary, LoadProblem

__all__ = ["FileSummary", "IdentityFileError", "LoadProblem", "read_table", "read_text"]

#: Largest identity file read (a trust's whole IP map is far smaller); a bigger one is a mistake.
MAX_FILE_BYTES = 64 * 1024 * 1024


class IdentityFileError(Exception):
    """An identity file cannot be used at all, so nothing in it was loaded and the previous
    contents stay in use. The message names the file and what to fix; fix it and reload."""


def read_text(path: Path) -> str:
    """The file's text; `utf-8-sig` because Excel starts the CSV files it saves with a BOM."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise IdentityFileError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise IdentityFileError(f"{path}: is a directory, not a file") from None
    except OSError as e:
        raise IdentityFileError(f"{path}: cannot read: {e.strerror or e}") from None
    if len(data) > MAX_FILE_BYTES:
        raise IdentityFileError(f"{path}: larger than {MAX_FILE_BYTES // 2**20} MiB; "
                                "is this the right file?")
    # errors="replace": one bad byte should cost one line, not the file.
    return data.decode("utf-8-sig", errors="replace")


def read_table(
    path: Path, required: tuple[str, ...], optional: tuple[str, ...], summary: FileSummary
) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield ``(line number, {column: stripped text})`` for each data row of a CSV file.

    The first row that is not blank or a ``#`` comment is the header: it names the columns, in
    any order, case-insensitively. Columns Schoolgate does not use are allowed (exports from the
    school's MIS carry many) and ignored. A header without a required column raises
    `IdentityFileError`. Rows with a bad byte, too few cells or an empty required cell are
    reported in `summary` and skipped. Optional cells that are absent or empty are left out.
    """
    text = read_text(path)
    rows = csv.reader(io.StringIO(text, newline=""), strict=True)
    columns: dict[str, int] | None = None
    while True:
        number = rows.line_num + 1  # where this row starts (a quoted cell may span lines)
        try:
            row = next(rows)
        except StopIteration:
            break
        except csv.Error as e:
            if rows.line_num > number:  # ran to the end of the file inside a quoted cell
                summary.problem(number, f"not valid CSV ({e}): a quote opened on this line is "
                                        "never closed, so the rest of the file was not read")
                break
            summary.problem(number, f"not valid CSV ({e})")
            continue
        if not any(cell.strip() for cell in row) or row[0].lstrip().startswith("#"):
            continue
        if columns is None:
            columns = _header(path, number, row, required, optional)
            continue
        if any("\ufffd" in cell for cell in row):
            summary.problem(number, "not valid UTF-8")
            continue
        values: dict[str, str] = {}
        missing: list[str] = []
        for name, index in columns.items():
            cell = row[index].strip() if index < len(row) else ""
            if cell:
                values[name] = cell
            elif name in required:
                missing.append(name)
        if missing:
            summary.problem(number, f"no {' or '.join(missing)} in this row")
            continue
        yield number, values
    if columns is None:
        raise IdentityFileError(f"{path}: empty; the first line must be the header "
                                f"{','.join(required + optional)}")


def _header(path: Path, number: int, row: list[str], required: tuple[str, ...],
            optional: tuple[str, ...]) -> dict[str, int]:
    names = [cell.strip().lower() for cell in row]
    missing = [c for c in required if c not in names]
    if missing:
        raise IdentityFileError(
            f"{path}:{number}: the first line must be a header naming the columns "
            f"{','.join(required + optional)} (optional: {', '.join(optional) or 'none'}); "
            f"this one has no {', '.join(missing)} column"
        )
    return {name: names.index(name) for name in required + optional if name in names}

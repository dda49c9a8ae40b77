"""How well the shipped keyword library flags the labelled searches in
tests/data/labelled_searches.tsv: per theme and per language, the share of concerning searches
flagged with the right theme (and at the right severity), and the harmless look-alikes flagged.

Each search goes through the gateway's own path: the term a Google search request carries
(`extract_search`), its normalised form matched against the library as `Classifier._flags`
does, and only unsuppressed flags counted. Figures are printed for the holdout half (the one to
quote), the tune half and the whole. Misses may be listed for the tune half only: rules are
tuned on that half, and the holdout half stays unread so that its figures stay honest.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from schoolgate.classify.library import Flag, KeywordLibrary
from schoolgate.classify.search import extract_search
from schoolgate.events import THEMES
from schoolgate.sources.keywords import load_library

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "tests" / "data" / "labelled_searches.tsv"
KEYWORDS = ROOT / "keywords"
HALVES = ("holdout", "tune", "whole")
_RANK = {"low": 0, "medium": 1, "high": 2}
_COLUMNS = ["id", "half", "language", "search", "theme", "min_severity", "trick", "note"]


@dataclass(frozen=True, slots=True)
class Row:
    id: str
    half: str
    language: str
    search: str
    theme: str
    min_severity: str
    trick: str
    note: str

    @property
    def concerning(self) -> bool:
        return self.theme != "none"


@dataclass(frozen=True, slots=True)
class Outcome:
    row: Row
    flags: tuple[Flag, ...]
    """The unsuppressed flags of the search, as the gateway records them."""

    @property
    def flagged(self) -> bool:
        return bool(self.flags)

    @property
    def right_theme(self) -> bool:
        return any(f.theme == self.row.theme for f in self.flags)

    @property
    def at_severity(self) -> bool:
        least = _RANK[self.row.min_severity] if self.row.min_severity else 0
        return any(f.theme == self.row.theme and _RANK[f.severity] >= least for f in self.flags)


def load_table(path: Path) -> list[Row]:
    """The table's rows; a malformed line stops the run with its line number."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or lines[0].split("\t") != _COLUMNS:
        raise SystemExit(f"{path}:1: the header must be the columns {' '.join(_COLUMNS)}")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        cells = line.split("\t")
        if len(cells) != len(_COLUMNS):
            raise SystemExit(f"{path}:{number}: {len(cells)} columns, expected {len(_COLUMNS)}")
        rows.append(Row(*cells))
    return rows


def judge(library: KeywordLibrary, row: Row) -> Outcome:
    """The flags the gateway would record for `row` typed into Google's search box."""
    search = extract_search("GET", "www.google.com",
                            "/search?q=" + urllib.parse.quote_plus(row.search))
    if search is None or not search.normalised:
        return Outcome(row, ())
    return Outcome(row, tuple(library.match(search.normalised, normalised=True)))


@dataclass(slots=True)
class Tally:
    """Counts over a set of rows: concerning ones and how they fared, look-alikes flagged."""

    concerning: int = 0
    right_theme: int = 0
    at_severity: int = 0
    any_theme: int = 0
    benign: int = 0
    false_flags: int = 0
    """Look-alikes flagged at all (in a theme's tally: flagged with that theme)."""

    def add(self, o: Outcome) -> None:
        if o.row.concerning:
            self.concerning += 1
            self.right_theme += o.right_theme
            self.at_severity += o.at_severity
            self.any_theme += o.flagged
        else:
            self.benign += 1
            self.false_flags += o.flagged

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "concerning": self.concerning,
            "recall": _ratio(self.right_theme, self.concerning),
            "recall_at_severity": _ratio(self.at_severity, self.concerning),
            "flagged_any_theme": _ratio(self.any_theme, self.concerning),
            "benign": self.benign,
            "false_flags": self.false_flags,
            "false_flag_rate": _ratio(self.false_flags, self.benign),
        }


@dataclass(slots=True)
class Figures:
    """One half's tallies: all rows, per theme and per language."""

    total: Tally = field(default_factory=Tally)
    themes: dict[str, Tally] = field(default_factory=lambda: {t: Tally() for t in THEMES})
    languages: dict[str, Tally] = field(default_factory=dict)

    def add(self, o: Outcome) -> None:
        self.total.add(o)
        self.languages.setdefault(o.row.language, Tally()).add(o)
        if o.row.concerning:
            self.themes[o.row.theme].add(o)
        else:
            # A look-alike counts as a false flag against each theme that flagged it, out of
            # all the half's look-alikes.
            flagged_by = {f.theme for f in o.flags}
            for theme, tally in self.themes.items():
                tally.benign += 1
                tally.false_flags += theme in flagged_by

    def as_dict(self) -> dict[str, object]:
        return {
            "all": self.total.as_dict(),
            "themes": {t: self.themes[t].as_dict() for t in THEMES},
            "languages": {k: v.as_dict() for k, v in sorted(self.languages.items())},
        }


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:5.1f} %" if whole else "    -  "


def measure(library: KeywordLibrary, rows: Iterable[Row]) -> tuple[dict[str, Figures],
                                                                     list[Outcome]]:
    figures = {h: Figures() for h in HALVES}
    outcomes = [judge(library, r) for r in rows]
    for o in outcomes:
        figures[o.row.half].add(o)
        figures["whole"].add(o)
    return figures, outcomes


def print_figures(name: str, f: Figures) -> None:
    t = f.total
    print(f"{name}: {t.concerning + t.benign} searches, {t.concerning} concerning, "
          f"{t.benign} look-alikes")
    head = (f"  {'':26}{'rows':>5}  {'theme':>7}  {'at sev':>7}  {'any':>7}  "
            f"{'false flags':>11}")
    print(head)
    for theme in THEMES:
        s = f.themes[theme]
        print(f"  {theme:26}{s.concerning:5}  {_pct(s.right_theme, s.concerning)}  "
              f"{_pct(s.at_severity, s.concerning)}  {_pct(s.any_theme, s.concerning)}  "
              f"{s.false_flags:11}")
    print(f"  {'all concerning':26}{t.concerning:5}  {_pct(t.right_theme, t.concerning)}  "
          f"{_pct(t.at_severity, t.concerning)}  {_pct(t.any_theme, t.concerning)}")
    print(f"  {'look-alikes (none)':26}{t.benign:5}  {'':7}  {'':7}  {'':7}  "
          f"{t.false_flags:11}  ({_pct(t.false_flags, t.benign).strip()})")
    print(f"  {'language':10}{'concerning':>11}  {'theme':>7}  {'at sev':>7}  "
          f"{'look-alikes':>11}  {'false flags':>11}")
    for language, s in sorted(f.languages.items(), key=lambda kv: (kv[0] != "en", kv[0])):
        print(f"  {language:10}{s.concerning:11}  {_pct(s.right_theme, s.concerning)}  "
              f"{_pct(s.at_severity, s.concerning)}  {s.benign:11}  {s.false_flags:11}")


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def _describe(flags: tuple[Flag, ...]) -> str:
    if not flags:
        return "nothing"
    return ", ".join(f"{f.phrase!r} ({f.theme}, {f.severity})" for f in flags)


def print_misses(outcomes: list[Outcome], half: str) -> None:
    rows = [o for o in outcomes if o.row.half == half]
    missed = [o for o in rows if o.row.concerning and not o.at_severity]
    false = [o for o in rows if not o.row.concerning and o.flagged]
    print(f"\n{half} half: {len(missed)} concerning searches not flagged with their theme at "
          "their severity")
    for o in missed:
        r = o.row
        print(f"  {r.id} [{r.language}] {r.theme} >= {r.min_severity} ({r.trick}): "
              f"{r.search!r} flagged {_describe(o.flags)}")
    print(f"\n{half} half: {len(false)} look-alikes flagged")
    for o in false:
        r = o.row
        print(f"  {r.id} [{r.language}] ({r.note}): {r.search!r} flagged {_describe(o.flags)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", type=Path, default=TABLE, help="the labelled searches")
    parser.add_argument("--keywords", type=Path, default=KEYWORDS,
                        help="the keyword library folder (default: the shipped one)")
    parser.add_argument("--show-misses", metavar="HALF",
                        help="list the misses and false flags of HALF; only 'tune' is allowed")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.show_misses is not None and args.show_misses != "tune":
        if args.show_misses == "holdout":
            parser.error("--show-misses holdout is refused: the holdout half measures rules "
                         "nobody tuned on it; reading its misses would turn it into a second "
                         "tune half and its figures into wishful ones. Use --show-misses tune.")
        parser.error(f"--show-misses {args.show_misses!r}: only 'tune' may be listed")

    library = load_library(args.keywords)
    for problem in library.problems:
        print(f"warning: {problem}", file=sys.stderr)
    figures, outcomes = measure(library, load_table(args.table))

    if args.json:
        print(json.dumps({"table": _shown(args.table), "keywords": _shown(args.keywords),
                          **{h: figures[h].as_dict() for h in HALVES}},
                         indent=2, ensure_ascii=False))
    else:
        print(f"search recall: {_shown(args.table)} against {_shown(args.keywords)}")
        print("  theme: flagged with the row's theme; at sev: and at least its min_severity; "
              "any: flagged at all; false flags: look-alikes flagged (by that theme)")
        for h in HALVES:
            print_figures(h, figures[h])
    if args.show_misses == "tune":
        print_misses(outcomes, "tune")
    return 0


if __name__ == "__main__":
    sys.exit(main())

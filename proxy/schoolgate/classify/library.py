"""Keyword libraries: the phrases of every safeguarding theme and the global suppression
contexts, compiled into one Aho-Corasick `KeywordSet`; matches become safeguarding `Flag`s, and
what a context suppressed is kept to explain.

Pure code: no mitmproxy, store or YAML import and no file reading; `sources.keywords` reads and
validates the files (the format is in the keyword folder's README) and builds the library.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from ..events import THEMES
from .keywords import SEVERITIES, KeywordMatch, KeywordSet, Phrase

__all__ = [
    "DEFAULT_LANGUAGE",
    "THEMES",
    "Context",
    "Findings",
    "Flag",
    "KeywordLibrary",
    "LibraryProblem",
    "LibrarySummary",
    "Suppressed",
    "ThemeInfo",
]

DEFAULT_LANGUAGE = "en"
_SEVERITY_RANK = {s: i for i, s in enumerate(reversed(SEVERITIES))}  # low 0, medium 1, high 2


# ---------------------------------------------------------------------------------------------
# What loading reports


@dataclass(frozen=True, slots=True)
class LibraryProblem:
    """A file or entry that was skipped (or a key that was ignored), and why."""

    path: str
    line: int
    """1-based line in `path` (0 when the problem is the folder itself)."""
    key: str
    """Where in the file, such as `phrases[3].severity`; empty for the whole file."""
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


@dataclass(frozen=True, slots=True)
class ThemeInfo:
    """A theme as the library's files describe it."""

    name: str
    title: str
    description: str
    severity: str
    """The default severity of the theme's own file (`<theme>.yaml`, else the first file)."""
    files: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Context:
    """A global suppression context: when it occurs in a text, matches of its themes are
    suppressed (except phrases marked `ignore_contexts`)."""

    text: str
    normalised: str
    themes: tuple[str, ...]
    language: str
    source: str
    """`file:line` of the entry."""


@dataclass(frozen=True, slots=True)
class Flag:
    """One library phrase found in a text: what the DSL sees."""

    phrase: str
    """The phrase as the library writes it."""
    theme: str
    severity: str
    language: str
    text: str
    """The matched part of the normalised text, such as `kill myself` for "k1ll mys3lf"."""
    start: int
    """Offset of `text` in the normalised text."""
    end: int
    weight: float
    source: str
    """`file:line` of the phrase, for `schoolgate why`."""


SuppressionKind = Literal["exclude", "context", "inside"]


@dataclass(frozen=True, slots=True)
class Suppressed:
    """A match that is not a flag, and why."""

    flag: Flag
    kind: SuppressionKind
    """`exclude`: one of the phrase's own exclusion contexts is in the text; `context`: a
    global suppression context of the theme is; `inside`: the match lies inside a longer flag
    that is at least as severe ("kill" inside "kill myself")."""
    by: str
    """The context that suppressed it, or the longer flag's phrase."""
    source: str
    """`file:line` of the context, or of the longer phrase."""

    @property
    def reason(self) -> str:
        if self.kind == "exclude":
            return (f"{self.by!r} is in the text, an exclusion of {self.flag.phrase!r} "
                    f"({self.source})")
        if self.kind == "context":
            return (f"{self.by!r} is in the text, a suppression context for "
                    f"{self.flag.theme} ({self.source})")
        return f"inside the longer match {self.by!r} ({self.source})"

    def __str__(self) -> str:
        return f"{self.flag.phrase!r} ({self.flag.theme}, {self.flag.severity}): {self.reason}"


@dataclass(frozen=True, slots=True)
class Findings:
    """What the library says about one text."""

    flags: tuple[Flag, ...]
    suppressed: tuple[Suppressed, ...]


@dataclass(frozen=True, slots=True)
class LibrarySummary:
    """Counts for the closing note of a load, and for documentation."""

    phrases: int
    contexts: int
    files: int
    problems: int
    by_theme: dict[str, int]
    by_language: dict[str, int]
    by_theme_language: dict[str, dict[str, int]]
    by_theme_severity: dict[str, dict[str, int]]
    high_themes: tuple[str, ...]
    """Themes whose default severity is high."""

    def __str__(self) -> str:
        lines = [
            f"{self.phrases} phrases in {len(self.by_theme)} themes from {self.files} files, "
            f"{self.contexts} suppression contexts, {self.problems} problems",
        ]
        for theme, count in self.by_theme.items():
            langs = ", ".join(f"{k} {v}" for k, v in self.by_theme_language[theme].items())
            sev = ", ".join(f"{k} {v}" for k, v in self.by_theme_severity[theme].items())
            high = " (high-severity theme)" if theme in self.high_themes else ""
            lines.append(f"  {theme}: {count}{high}; {sev}; {langs}")
        lines.append("  by language: " + ", ".join(f"{k} {v}" for k, v in self.by_language.items()))
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The library


@dataclass(frozen=True, slots=True)
class _Entry:
    """What the library knows about a phrase beyond its `Phrase`."""

    source: str
    own: dict[str, str]
    """The phrase's own exclusion contexts: normalised -> as written."""


class KeywordLibrary:
    """Every theme's phrases in one `KeywordSet` (one automaton, one pass per text), with the
    global suppression contexts folded into each phrase's exclusions, so the classifier, which
    runs `keyword_set` directly, suppresses exactly what `match` does (but for `inside`)."""

    __slots__ = ("_entries", "_global", "contexts", "files", "keyword_set", "problems", "themes")

    def __init__(
        self,
        phrases: Iterable[tuple[Phrase, str, dict[str, str]]] = (),
        *,
        contexts: Iterable[Context] = (),
        themes: dict[str, ThemeInfo] | None = None,
        files: Iterable[str] = (),
        problems: Iterable[LibraryProblem] = (),
    ) -> None:
        """`phrases` are (phrase with global contexts already among its exclusions, `file:line`,
        its own exclusions normalised -> as written); `sources.keywords.load_library` builds
        them from the keyword folder."""
        self._entries: dict[Phrase, _Entry] = {}
        for phrase, source, own in phrases:
            self._entries.setdefault(phrase, _Entry(source, own))
        self.contexts: tuple[Context, ...] = tuple(contexts)
        self._global: dict[tuple[str, str], Context] = {}
        for c in self.contexts:
            for theme in c.themes:
                self._global.setdefault((theme, c.normalised), c)
        self.themes: dict[str, ThemeInfo] = dict(themes or {})
        self.files: tuple[str, ...] = tuple(files)
        self.problems: tuple[LibraryProblem, ...] = tuple(problems)
        self.keyword_set = KeywordSet(self._entries)
        """The compiled automaton; hand it to `Classifier.keyword_sets`."""

    @property
    def phrases(self) -> tuple[Phrase, ...]:
        return self.keyword_set.phrases

    def __len__(self) -> int:
        return len(self.keyword_set)

    def __repr__(self) -> str:
        return f"<KeywordLibrary of {len(self)} phrases, {len(self.problems)} problems>"

    def match(self, text: str, *, normalised: bool = False) -> list[Flag]:
        """The flags in `text`, by position, the longest first at each position."""
        return list(self.explain(text, normalised=normalised).flags)

    def explain(self, text: str, *, normalised: bool = False) -> Findings:
        """The flags in `text`, and the matches that were suppressed, each with its reason."""
        return self.findings(
            self.keyword_set.match(text, normalised=normalised, with_suppressed=True)
        )

    def findings(self, matches: Iterable[KeywordMatch]) -> Findings:
        """Turn matches of this library's `keyword_set` (with or without the suppressed ones)
        into findings: for a classifier that ran the set itself."""
        flags: list[Flag] = []
        suppressed: list[Suppressed] = []
        for m in matches:
            flag = self._flag(m)
            if m.suppressed_by is None:
                flags.append(flag)
                continue
            entry = self._entries[m.phrase]
            if m.suppressed_by in entry.own:
                suppressed.append(
                    Suppressed(flag, "exclude", entry.own[m.suppressed_by], entry.source)
                )
            elif (c := self._global.get((m.phrase.theme, m.suppressed_by))) is not None:
                suppressed.append(Suppressed(flag, "context", c.text, c.source))
            else:  # a phrase built by hand, with exclusions the library was not told of
                suppressed.append(Suppressed(flag, "exclude", m.suppressed_by, entry.source))
        # A match inside a longer, at least as severe flag adds nothing for the DSL: "kill"
        # inside "kill myself", "nudes" inside "send nudes".
        kept: list[Flag] = []
        for flag in flags:
            outer = next(
                (
                    o
                    for o in flags
                    if o.start <= flag.start
                    and flag.end <= o.end
                    and o.end - o.start > flag.end - flag.start
                    and _SEVERITY_RANK[o.severity] >= _SEVERITY_RANK[flag.severity]
                ),
                None,
            )
            if outer is None:
                kept.append(flag)
            else:
                suppressed.append(Suppressed(flag, "inside", outer.phrase, outer.source))
        return Findings(tuple(kept), tuple(suppressed))

    def _flag(self, m: KeywordMatch) -> Flag:
        p = m.phrase
        return Flag(
            phrase=p.text,
            theme=p.theme,
            severity=p.severity,
            language=p.language or DEFAULT_LANGUAGE,
            text=m.text,
            start=m.start,
            end=m.end,
            weight=p.weight,
            source=self._entries[p].source,
        )

    def summary(self) -> LibrarySummary:
        by_theme: Counter[str] = Counter()
        by_language: Counter[str] = Counter()
        by_theme_language: dict[str, Counter[str]] = {}
        by_theme_severity: dict[str, Counter[str]] = {}
        for p in self.phrases:
            language = p.language or DEFAULT_LANGUAGE
            by_theme[p.theme] += 1
            by_language[language] += 1
            by_theme_language.setdefault(p.theme, Counter())[language] += 1
            by_theme_severity.setdefault(p.theme, Counter())[p.severity] += 1
        order = [t for t in THEMES if t in by_theme]

        def ranked(c: Counter[str]) -> dict[str, int]:
            return dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))

        return LibrarySummary(
            phrases=len(self.phrases),
            contexts=len(self.contexts),
            files=len(self.files),
            problems=len(self.problems),
            by_theme={t: by_theme[t] for t in order},
            by_language=ranked(by_language),
            by_theme_language={t: ranked(by_theme_language[t]) for t in order},
            by_theme_severity={
                t: {s: by_theme_severity[t][s] for s in SEVERITIES if by_theme_severity[t][s]}
                for t in order
            },
            high_themes=tuple(t for t in THEMES if t in self.themes
                              and self.themes[t].severity == "high"),
        )

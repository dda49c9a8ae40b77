"""Keyword libraries: the phrases of every safeguarding theme and the global suppression
contexts, compiled into one Aho-Corasick `KeywordSet`; matches become safeguarding `Flag`s, and
what a context suppressed is kept to explain.

Pure code: no mitmproxy, store or YAML import and no file reading; `sources.keywords` reads and
validates the files (the format is in the keyword folder's README) and builds the library.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import product
from typing import Literal

from ..events import THEMES
from .keywords import SEVERITIES, KeywordMatch, KeywordSet, Member, MemberHit, Phrase, Scan

__all__ = [
    "DEFAULT_LANGUAGE",
    "THEMES",
    "Combination",
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
    combination: bool = False
    """A combination rule's flag: `phrase` is then the rule's name, and `text` the words from
    its first member found to its last."""

    @property
    def rule(self) -> str:
        """The rule that matched: the phrase as written, or the combination's name."""
        return self.phrase


@dataclass(frozen=True, slots=True)
class Combination:
    """A combination rule: one member of every group within `within` words, in any order
    ("boyfriend" + an adult's age + a child's age). No group's words flag on their own."""

    name: str
    theme: str
    severity: str
    groups: tuple[tuple[Member, ...], ...]
    """At least two groups; each a choice of words (a word class's members among them)."""
    within: int
    """The most words the matched members may span, first to last, inclusive."""
    weight: float = 1.0
    language: str = DEFAULT_LANGUAGE
    exclusions: tuple[str, ...] = ()
    """Normalised contexts that suppress the rule when present: its own and (unless it ignores
    them) its theme's global contexts."""
    own: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    """Its own exclusions: normalised -> as written."""
    source: str = ""

    def __post_init__(self) -> None:
        if len(self.groups) < 2 or not all(self.groups):
            raise ValueError(f"combination {self.name!r} needs at least two non-empty groups")
        if self.within < len(self.groups):
            raise ValueError(f"combination {self.name!r}: within must be at least the number "
                             f"of groups ({len(self.groups)})")
        if self.severity not in SEVERITIES:
            raise ValueError(f"combination {self.name!r}: severity must be one of "
                             f"{', '.join(SEVERITIES)}")


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
    shown: str | None = None
    """For a generated variant (a misspelling, a stem): the phrase it stands for, which its
    flags name, so a variant and its phrase in one text count once."""


class KeywordLibrary:
    """Every theme's phrases in one `KeywordSet` (one automaton, one pass per text), with the
    global suppression contexts folded into each phrase's exclusions, so the classifier, which
    runs `keyword_set` directly, suppresses exactly what `match` does (but for `inside`)."""

    __slots__ = ("_by_name", "_complete", "_entries", "_global", "_uses", "combinations",
                 "contexts", "files", "keyword_set", "problems", "themes")

    def __init__(
        self,
        phrases: Iterable[tuple[Phrase, str, dict[str, str]]
                          | tuple[Phrase, str, dict[str, str], str | None]] = (),
        *,
        contexts: Iterable[Context] = (),
        themes: dict[str, ThemeInfo] | None = None,
        files: Iterable[str] = (),
        problems: Iterable[LibraryProblem] = (),
        combinations: Iterable[Combination] = (),
    ) -> None:
        """`phrases` are (phrase with global contexts already among its exclusions, `file:line`,
        its own exclusions normalised -> as written[, the phrase a generated variant stands
        for]); `sources.keywords.load_library` builds them, and the combinations, from the
        keyword folder."""
        self._entries: dict[Phrase, _Entry] = {}
        for phrase, source, own, *variant_of in phrases:
            self._entries.setdefault(phrase, _Entry(source, own,
                                                    variant_of[0] if variant_of else None))
        self.contexts: tuple[Context, ...] = tuple(contexts)
        self._global: dict[tuple[str, str], Context] = {}
        for c in self.contexts:
            for theme in c.themes:
                self._global.setdefault((theme, c.normalised), c)
        self.themes: dict[str, ThemeInfo] = dict(themes or {})
        self.files: tuple[str, ...] = tuple(files)
        self.problems: tuple[LibraryProblem, ...] = tuple(problems)
        self.combinations: tuple[Combination, ...] = tuple(combinations)
        self._by_name = {c.name: c for c in self.combinations}
        members: dict[Member, int] = {}
        uses: dict[int, dict[tuple[int, int], None]] = {}
        for rule, combo in enumerate(self.combinations):
            for group, words in enumerate(combo.groups):
                for member in words:
                    number = members.setdefault(member, len(members))
                    uses.setdefault(number, {})[(rule, 1 << group)] = None
        self._uses = {m: tuple(u) for m, u in uses.items()}
        """Member number -> the (rule, its group's bit) pairs it belongs to."""
        self._complete = tuple((1 << len(c.groups)) - 1 for c in self.combinations)
        """Per rule, the mask of every group."""
        self.keyword_set = KeywordSet(
            self._entries, members,
            {c for combo in self.combinations for c in combo.exclusions})
        """The compiled automaton: phrases, combination members and every context, one pass."""

    @property
    def phrases(self) -> tuple[Phrase, ...]:
        """The phrases as the library's files write them (generated variants are in
        `keyword_set.phrases` too)."""
        return tuple(p for p in self.keyword_set.phrases if self._entries[p].shown is None)

    def __len__(self) -> int:
        return len(self.phrases)

    def __repr__(self) -> str:
        return f"<KeywordLibrary of {len(self)} phrases, {len(self.problems)} problems>"

    def written(self, phrase: Phrase) -> str:
        """The phrase as the library writes it: for a generated variant, the phrase it was made
        from."""
        entry = self._entries.get(phrase)
        return entry.shown or phrase.text if entry is not None else phrase.text

    def match(self, text: str, *, normalised: bool = False) -> list[Flag]:
        """The flags in `text`, by position, the longest first at each position."""
        return list(self.explain(text, normalised=normalised).flags)

    def explain(self, text: str, *, normalised: bool = False) -> Findings:
        """The flags in `text`, and the matches that were suppressed, each with its reason."""
        return self.scan_findings(
            self.keyword_set.scan(text, normalised=normalised, with_suppressed=True))

    def scan_findings(self, scan: Scan) -> Findings:
        """The findings of one pass of `keyword_set` (with or without the suppressed matches):
        the phrases' and the combinations'. For a classifier that ran the set itself."""
        return self.findings(scan.matches, self._combined(scan))

    def _combined(self, scan: Scan) -> list[tuple[Flag, str | None]]:
        """Each combination rule whose groups all have a member within its window: its flag,
        and the context that suppresses it (None: it is a flag)."""
        if not scan.members:
            return []
        # First which rules have every group present (an int per rule, from the members found:
        # most are common words of rules that are not), then the hits of those rules only,
        # placed in the text.
        uses = self._uses
        masks: dict[int, int] = {}
        present = scan.members.ids
        for member in present:
            for rule, bit in uses.get(member, ()):
                masks[rule] = masks.get(rule, 0) | bit
        complete = self._complete
        ready = {rule for rule, mask in masks.items() if mask == complete[rule]}
        if not ready:
            return []
        by_rule: dict[int, list[list[MemberHit]]] = {
            rule: [[] for _ in self.combinations[rule].groups] for rule in ready}
        # A page's: only the members of ready rules are placed; a search's few, all at once.
        wanted = None if scan.members.few else {
            m for m in present if any(rule in ready for rule, _ in uses.get(m, ()))}
        for hit in scan.members.hits(wanted):
            for rule, bit in uses.get(hit.member, ()):
                if rule in ready:
                    by_rule[rule][bit.bit_length() - 1].append(hit)
        # The word number of every offset a ready rule's hits start or end at: counted between
        # neighbouring offsets with str.count, so a long page costs one pass in C.
        text = scan.text
        offsets = sorted({o for groups in by_rule.values() for hits in groups for h in hits
                          for o in (h.start, h.end - 1)})
        word: dict[int, int] = {}
        words = done = 0
        for offset in offsets:
            words += text.count(" ", done, offset)
            done = offset
            word[offset] = words
        found: list[tuple[Flag, str | None]] = []
        for rule, groups in by_rule.items():
            combo = self.combinations[rule]
            span = _window(groups, combo.within, word)
            if span is None:
                continue
            start, end = span
            by = next((c for c in combo.exclusions if c in scan.contexts), None)
            found.append((Flag(combo.name, combo.theme, combo.severity, combo.language,
                               scan.text[start:end], start, end, combo.weight, combo.source,
                               combination=True), by))
        return found

    def findings(self, matches: Iterable[KeywordMatch],
                 combined: Iterable[tuple[Flag, str | None]] = ()) -> Findings:
        """Turn matches of this library's `keyword_set` (with or without the suppressed ones)
        into findings: for a classifier that ran the set itself."""
        flags: list[Flag] = []
        suppressed: list[Suppressed] = []
        for flag, by in combined:
            if by is None:
                flags.append(flag)
                continue
            combo = self._by_name[flag.phrase]
            if by in combo.own:
                suppressed.append(Suppressed(flag, "exclude", combo.own[by], combo.source))
            elif (c := self._global.get((combo.theme, by))) is not None:
                suppressed.append(Suppressed(flag, "context", c.text, c.source))
            else:
                suppressed.append(Suppressed(flag, "exclude", by, combo.source))
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
        # inside "kill myself", "nudes" inside "send nudes". One sweep by position, holding
        # only the flags still open there: a page has hundreds of flags, so not each by each.
        outer_of: dict[int, Flag] = {}
        if len(flags) > 1:
            order = sorted(range(len(flags)),
                           key=lambda i: (flags[i].start, flags[i].start - flags[i].end))
            open_: list[Flag] = []
            for i in order:
                flag = flags[i]
                open_ = [o for o in open_ if o.end > flag.start]
                outer = next((o for o in open_
                              if flag.end <= o.end
                              and o.end - o.start > flag.end - flag.start
                              and _SEVERITY_RANK[o.severity] >= _SEVERITY_RANK[flag.severity]),
                             None)
                if outer is not None:
                    outer_of[i] = outer
                open_.append(flag)
        kept: list[Flag] = []
        for i, flag in enumerate(flags):
            outer = outer_of.get(i)
            if outer is None:
                kept.append(flag)
            else:
                suppressed.append(Suppressed(flag, "inside", outer.phrase, outer.source))
        return Findings(tuple(kept), tuple(suppressed))

    def _flag(self, m: KeywordMatch) -> Flag:
        p = m.phrase
        entry = self._entries[p]
        return Flag(
            phrase=entry.shown or p.text,
            theme=p.theme,
            severity=p.severity,
            language=p.language or DEFAULT_LANGUAGE,
            text=m.text,
            start=m.start,
            end=m.end,
            weight=p.weight,
            source=entry.source,
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


def _window(groups: Sequence[Sequence[MemberHit]], within: int,
            word: dict[int, int]) -> tuple[int, int] | None:
    """The span (offsets in the normalised text) of the first window of at most `within` words
    that holds one hit of every group, no two of them overlapping; None when there is none.

    Linear in the hits (a page may hold many): the hits of every group, by position, under a
    sliding window of words; a window that covers every group is then checked for a choice of
    distinct words (one word in two groups' lists cannot stand for both)."""
    tagged = sorted((word[h.start], word[h.end - 1], g, h)
                    for g, hits in enumerate(groups) for h in hits)
    need = len(groups)
    count = [0] * need
    covered = 0
    left = 0
    for right, (_, last_word, group, _) in enumerate(tagged):
        if count[group] == 0:
            covered += 1
        count[group] += 1
        while tagged[left][0] < last_word - within + 1:  # the window is too long
            g = tagged[left][2]
            count[g] -= 1
            if count[g] == 0:
                covered -= 1
            left += 1
        if covered == need:
            inside = tagged[left:right + 1]
            choices = [[h for _, _, g, h in inside if g == i] for i in range(need)]
            if _distinct(choices):
                return tagged[left][3].start, max(h.end for _, _, _, h in inside)
    return None


def _distinct(choices: list[list[MemberHit]]) -> bool:
    """Whether one hit per group can be chosen with no two overlapping. Each group's hits are
    few inside one window; past a few hundred choices, assume yes."""
    total = 1
    for c in choices:
        total *= len(c)
    if total > 256:
        return True
    for choice in product(*choices):
        spans = sorted((h.start, h.end) for h in choice)
        if all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False)):
            return True
    return False

"""Load a keyword library: the theme files and suppression contexts in a keyword folder (format
in that folder's README), validated line by line into the `KeywordLibrary` that classify matches.

A bad entry is reported with its file and line and skipped; the rest of the library still
loads, and the caller decides whether to use it.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import yaml

from ..classify.keywords import MODES, SEVERITIES, Member, Mode, Phrase, Severity, normalise_text
from ..classify.library import (
    DEFAULT_LANGUAGE,
    Combination,
    Context,
    KeywordLibrary,
    LibraryProblem,
    ThemeInfo,
)
from ..classify.variants import variants
from ..config.yamltree import Node, compose
from ..config.yamltree import describe as _kind
from ..events import THEMES

__all__ = ["load_library"]

THEME_KEYS = ("theme", "title", "description", "severity", "variants", "phrases",
              "combinations")
PHRASE_KEYS = ("phrase", "severity", "language", "mode", "weight", "exclude", "ignore_contexts",
               "variants")
COMBINATION_KEYS = ("rule", "all", "within", "severity", "weight", "language", "exclude",
                    "ignore_contexts", "variants")
CONTEXT_FILE_KEYS = ("contexts", "title", "description")
CONTEXT_KEYS = ("context", "themes", "language")
CLASS_FILE_KEYS = ("classes", "title", "description")
CLASS_KEYS = ("words", "numbers", "forms", "variants")
MAX_WEIGHT = 100.0
DEFAULT_WITHIN = 8
"""How many words a combination's members may span when the rule does not say."""
MAX_WITHIN = 50
MAX_NUMBERS = 200
"""The most numbers one word class may hold (each is a word in the automaton, times its forms)."""
# A substring this short sits inside too many ordinary words ("ana" in "banana").
MIN_SUBSTRING = 4
_CLASS_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_RANGE = re.compile(r"^\s*(\d{1,3})\s*(?:-\s*(\d{1,3}))?\s*$")
# BCP 47 language, optional script and region: "pl", "ur-Latn", "es-MX".
_LANGUAGE = re.compile(r"^([a-z]{2,3})(-[a-z]{4})?(-(?:[a-z]{2}|[0-9]{3}))?$", re.IGNORECASE)


def load_library(folder: Path | str) -> KeywordLibrary:
    """Read every `*.yaml` file in `folder`: theme files (`theme:` at the top) and suppression
    context files (`contexts:` at the top). Never raises for bad content: every problem is in
    the returned library's `problems`, and what was good is loaded."""
    folder = Path(folder)
    loader = _Loader()
    if not folder.is_dir():
        loader.problems.append(LibraryProblem(str(folder), 0, "", "keyword folder not found"))
        return loader.library()
    paths = sorted(folder.glob("*.yaml"))
    if not paths:
        loader.problems.append(LibraryProblem(str(folder), 0, "", "no *.yaml keyword files"))
    trees = [(p, t) for p in paths if (t := loader.read(p)) is not None]
    theme_files: list[tuple[Path, _File]] = []
    for path, tree in trees:
        f = _File(loader, path, tree)
        kind = f.kind()
        if kind == "contexts":
            f.contexts()
        elif kind == "classes":
            f.classes()
        elif kind == "theme":
            theme_files.append((path, f))
    # Contexts and word classes first (phrases are checked against the one, combinations use
    # the other); a theme's own file first, so it sets the theme's title and default severity.
    theme_files.sort(key=lambda pf: (pf[0].stem != pf[1].theme_name, pf[0].name))
    for _, f in theme_files:
        f.theme()
    return loader.library()


@dataclass(slots=True)
class _Phrase:
    phrase: Phrase
    source: str
    own: dict[str, str]


class _Loader:
    """The state shared by every file of one load."""

    def __init__(self) -> None:
        self.problems: list[LibraryProblem] = []
        self.files: list[str] = []
        self.contexts: list[Context] = []
        self.phrases: list[_Phrase] = []
        self.themes: dict[str, ThemeInfo] = {}
        # Per theme: normalised phrase (and the joined form of several words) -> first entry.
        self.seen: dict[str, dict[str, _Phrase]] = {}
        self.joined: dict[str, dict[str, _Phrase]] = {}
        self.variants: list[tuple[Phrase, str, dict[str, str], str]] = []
        self.classes: dict[str, tuple[tuple[Member, ...], str]] = {}
        """Word class name -> its members and `file:line`."""
        self.combinations: dict[str, Combination] = {}

    def read(self, path: Path) -> Node | None:
        where = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            self.problems.append(LibraryProblem(where, 0, "", f"not valid UTF-8 ({e.reason}); "
                                                "file skipped"))
            return None
        except OSError as e:
            self.problems.append(LibraryProblem(where, 0, "", f"cannot read: {e}; file skipped"))
            return None

        def report(line: int, key: str, message: str) -> None:
            self.problems.append(LibraryProblem(where, line, key, message))

        try:
            # Only the bad key is left out and the file still loads: the note says so.
            tree = compose(text, report, not_text="ignored", twice="the first is used")
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark
            line = mark.line + 1 if mark else 0
            self.problems.append(
                LibraryProblem(where, line, "", f"not valid YAML: {e.problem or e}; file skipped")
            )
            return None
        self.files.append(where)
        return tree

    def library(self) -> KeywordLibrary:
        listed = {(p.phrase.theme, p.phrase.normalised) for p in self.phrases}
        # A variant that is itself a listed phrase of its theme is that phrase: left out.
        generated = [v for v in self.variants if (v[0].theme, v[0].normalised) not in listed]
        return KeywordLibrary(
            [*((p.phrase, p.source, p.own) for p in self.phrases), *generated],
            combinations=self.combinations.values(),
            contexts=self.contexts,
            themes=self.themes,
            files=self.files,
            # By file and line, as a technician fixes them.
            problems=sorted(self.problems, key=lambda p: (p.path, p.line)),
        )


class _Invalid(Exception):
    """An entry cannot be used; its problem was reported."""


class _File:
    """Checks one file. Each check reports a problem and raises `_Invalid`, which skips the
    entry (or the file) at hand."""

    def __init__(self, loader: _Loader, path: Path, tree: Node) -> None:
        self.loader = loader
        self.path = str(path)
        self.tree = tree
        # The file's top-level keys; `kind` reports a file whose top is not a mapping.
        self.top: dict[str, Node] = tree.data if isinstance(tree.data, dict) else {}
        self.theme_name = ""

    # -- reporting -----------------------------------------------------------------------------

    def problem(self, v: Node, message: str, key: str | None = None) -> None:
        self.loader.problems.append(
            LibraryProblem(self.path, v.line, v.key if key is None else key, message)
        )

    def invalid(self, v: Node, message: str, key: str | None = None) -> _Invalid:
        self.problem(v, message, key)
        return _Invalid()

    def where(self, v: Node) -> str:
        return f"{self.path}:{v.line}"

    # -- typed accessors -----------------------------------------------------------------------

    def mapping(self, v: Node, allowed: tuple[str, ...], skipped: str) -> dict[str, Node]:
        """The mapping in `v`; an unknown key is a problem that skips it (a misspelt `exclude`
        or `severity` would change what the entry does)."""
        if not isinstance(v.data, dict):
            raise self.invalid(v, f"must be a mapping of keys to values, not {_kind(v.data)}; "
                                  f"{skipped}")
        unknown = False
        for name, child in v.data.items():
            if name not in allowed:
                hint = difflib.get_close_matches(name, allowed, n=1)
                also = f"; did you mean {hint[0]!r}?" if hint else ""
                self.problem(child, f"unknown key (allowed: {', '.join(allowed)}){also}; "
                                    f"{skipped}")
                unknown = True
        if unknown:
            raise _Invalid()
        return v.data

    def required(self, m: dict[str, Node], parent: Node, name: str, skipped: str) -> Node:
        if name not in m:
            key = f"{parent.key}.{name}" if parent.key else name
            raise self.invalid(parent, f"is required but missing; {skipped}", key)
        return m[name]

    def text(self, v: Node, skipped: str) -> str:
        if not isinstance(v.data, str) or not v.data.strip():
            quote = " (quote it)" if isinstance(v.data, bool | int | float) else ""
            raise self.invalid(v, f"must be non-empty text, not {_kind(v.data)}{quote}; "
                                  f"{skipped}")
        return v.data.strip()

    def choice(self, v: Node, choices: tuple[str, ...], what: str, skipped: str) -> str:
        if not isinstance(v.data, str) or v.data not in choices:
            hint = (difflib.get_close_matches(v.data, choices, n=1)
                    if isinstance(v.data, str) else [])
            also = f"; did you mean {hint[0]!r}?" if hint else ""
            raise self.invalid(v, f"unknown {what} {v.data!r} (allowed: {', '.join(choices)})"
                                  f"{also}; {skipped}")
        return v.data

    def language(self, v: Node, skipped: str) -> str:
        m = _LANGUAGE.match(v.data) if isinstance(v.data, str) else None
        if m is None:
            raise self.invalid(v, f"unknown language {v.data!r} (allowed: a language code such "
                                  f"as en, pl, ur, ar, ro, es, with a script if needed, such as "
                                  f"ur-Latn); {skipped}")
        lang, script, region = m.groups()
        return lang.lower() + (script.title() if script else "") + (region.upper() if region
                                                                    else "")

    def sequence(self, v: Node, skipped: str) -> list[Node]:
        if not isinstance(v.data, list):
            raise self.invalid(v, f"must be a list, not {_kind(v.data)}; {skipped}")
        return v.data

    # -- files ---------------------------------------------------------------------------------

    def kind(self) -> str | None:
        tree, data = self.tree, self.top
        kinds = [k for k in ("theme", "contexts", "classes") if k in data]
        if len(kinds) != 1:
            self.problem(tree, "a keyword file starts with `theme:` (a theme's phrases), "
                               "`contexts:` (suppression contexts) or `classes:` (word classes "
                               "for combinations), not "
                               + (" and ".join(kinds) if kinds else "none of them")
                               + "; file skipped")
            return None
        if kinds[0] == "theme":
            theme = data["theme"]
            self.theme_name = theme.data if isinstance(theme.data, str) else ""
        return kinds[0]

    def classes(self) -> None:
        self.header(self.top, CLASS_FILE_KEYS)
        v = self.top["classes"]
        if not isinstance(v.data, dict):
            self.problem(v, f"must be a mapping of class names to classes, not "
                            f"{_kind(v.data)}; file skipped")
            return
        for name, item in v.data.items():
            try:
                self.word_class(name, item)
            except _Invalid:
                pass

    def word_class(self, name: str, item: Node) -> None:
        skipped = f"class {name!r} skipped"
        if not _CLASS_NAME.match(name):
            raise self.invalid(item, f"a class name is lowercase letters, digits and _, such as "
                                     f"child_age; {skipped}")
        if name in self.loader.classes:
            raise self.invalid(item, f"class {name!r} is already defined "
                                     f"({self.loader.classes[name][1]}); {skipped}")
        m = self.mapping(item, CLASS_KEYS, skipped)
        if "words" not in m and "numbers" not in m:
            raise self.invalid(item, f"needs words, numbers or both; {skipped}")
        words = [self.text(w, skipped) for w in self.sequence(m["words"], skipped)] \
            if "words" in m else []
        numbers: list[str] = []
        if "numbers" in m:
            nv = m["numbers"]
            r = _RANGE.match(str(nv.data)) if isinstance(nv.data, str | int) else None
            if r is None:
                raise self.invalid(nv, f"must be a range such as 10-17, not {_kind(nv.data)}; "
                                       f"{skipped}")
            low, high = int(r[1]), int(r[2] or r[1])
            if low > high or high - low + 1 > MAX_NUMBERS:
                raise self.invalid(nv, f"must run upwards and hold at most {MAX_NUMBERS} "
                                       f"numbers; {skipped}")
            numbers = [str(n) for n in range(low, high + 1)]
        forms = ["{n}"]
        if "forms" in m:
            forms = [self.text(f, skipped) for f in self.sequence(m["forms"], skipped)]
            bad = [f for f in forms if "{n}" not in f]
            if bad or not forms:
                raise self.invalid(m["forms"], f"every form holds {{n}}, where the number or "
                                               f"word goes (such as '{{n}} years old'); "
                                               f"{skipped}")
        with_variants = self.boolean(m, "variants", skipped)
        members: dict[Member, None] = {}
        for word in (*numbers, *words):
            for form in forms:
                text = normalise_text(form.replace("{n}", word))
                if not text:
                    raise self.invalid(item, f"{form.replace('{n}', word)!r} has no letters or "
                                             f"digits; {skipped}")
                members[Member(text)] = None
                if with_variants:
                    members.update(dict.fromkeys(Member(v) for v in sorted(variants(text))))
        self.loader.classes[name] = (tuple(members), self.where(item))

    def combination(self, item: Node, theme: str, default: str,
                    contexts: list[Context], file_variants: bool = False) -> None:
        skipped = "combination skipped"
        m = self.mapping(item, COMBINATION_KEYS, skipped)
        name = self.text(self.required(m, item, "rule", skipped), skipped)
        skipped = f"combination {name!r} skipped"
        with_variants = self.boolean(m, "variants", skipped, file_variants)
        if name in self.loader.combinations:
            raise self.invalid(m["rule"], f"a rule named {name!r} is already defined "
                                          f"({self.loader.combinations[name].source}); "
                                          f"{skipped}")
        groups: list[tuple[Member, ...]] = []
        for g in self.sequence(self.required(m, item, "all", skipped), skipped):
            items = self.sequence(g, skipped) if isinstance(g.data, list) else [g]
            group: dict[Member, None] = {}
            for word in items:
                text = self.text(word, skipped)
                if text.startswith("@"):
                    found = self.loader.classes.get(text[1:])
                    if found is None:
                        known = ", ".join(sorted(self.loader.classes)) or "none are defined"
                        raise self.invalid(word, f"no word class {text[1:]!r} (classes: "
                                                 f"{known}); {skipped}")
                    group.update(dict.fromkeys(found[0]))
                else:
                    n = normalise_text(text)
                    if not n:
                        raise self.invalid(word, f"{text!r} has no letters or digits; "
                                                 f"{skipped}")
                    group[Member(n)] = None
                    if with_variants:
                        group.update(dict.fromkeys(Member(v) for v in sorted(variants(n))))
            if not group:
                raise self.invalid(g, f"an empty group; {skipped}")
            groups.append(tuple(group))
        if len(groups) < 2:
            raise self.invalid(m["all"], f"needs at least two groups of words (one alone is a "
                                         f"phrase); {skipped}")
        within = DEFAULT_WITHIN
        if "within" in m:
            w = m["within"].data
            if isinstance(w, bool) or not isinstance(w, int) or not len(groups) <= w <= MAX_WITHIN:
                raise self.invalid(m["within"], f"must be a whole number of words from "
                                                f"{len(groups)} (the groups) to {MAX_WITHIN}; "
                                                f"{skipped}")
            within = w
        severity = (self.choice(m["severity"], SEVERITIES, "severity", skipped)
                    if "severity" in m else default)
        language = self.language(m["language"], skipped) if "language" in m else DEFAULT_LANGUAGE
        weight = self.weight(m, skipped)
        ignore = self.boolean(m, "ignore_contexts", skipped)
        own = self.exclusions(m, skipped)
        exclusions = [*own, *(c.normalised for c in contexts
                              if not ignore and c.normalised not in own)]
        try:
            combo = Combination(name, theme, severity, tuple(groups), within, weight, language,
                                tuple(exclusions), own, self.where(item))
        except ValueError as e:
            raise self.invalid(item, f"{e}; {skipped}") from None
        self.loader.combinations[name] = combo

    def exclusions(self, m: dict[str, Node], skipped: str,
                   padded: tuple[str, ...] = ()) -> dict[str, str]:
        """An entry's own `exclude` contexts, normalised -> as written. With the phrase's
        `padded` forms, a context inside the phrase itself is refused (it could never flag)."""
        own: dict[str, str] = {}
        for v in self.sequence(m["exclude"], skipped) if "exclude" in m else ():
            context = self.text(v, skipped)
            n = normalise_text(context)
            if not n:
                raise self.invalid(v, f"{context!r} has no letters or digits; {skipped}")
            if padded and _starts_a_word_in(n, padded):
                raise self.invalid(v, f"{context!r} is part of the phrase itself, so the "
                                      f"phrase could never flag; {skipped}")
            own.setdefault(n, context)
        return own

    def weight(self, m: dict[str, Node], skipped: str) -> float:
        if "weight" not in m:
            return 1.0
        w = m["weight"].data
        if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w) \
                or not -MAX_WEIGHT <= w <= MAX_WEIGHT:
            raise self.invalid(m["weight"], f"must be a number from {-MAX_WEIGHT:g} to "
                                            f"{MAX_WEIGHT:g}, not {_kind(w)}; {skipped}")
        return float(w)

    def boolean(self, m: dict[str, Node], name: str, skipped: str,
                default: bool = False) -> bool:
        if name not in m:
            return default
        flag = m[name].data
        if not isinstance(flag, bool):
            raise self.invalid(m[name], f"must be true or false, not {_kind(flag)}; {skipped}")
        return flag

    def header(self, data: dict[str, Node], allowed: tuple[str, ...]) -> None:
        for name, child in data.items():
            if name not in allowed:
                hint = difflib.get_close_matches(name, allowed, n=1)
                also = f"; did you mean {hint[0]!r}?" if hint else ""
                # A header key changes no entry: report it, load the rest.
                self.problem(child, f"unknown key (allowed: {', '.join(allowed)}){also}; ignored")

    def contexts(self) -> None:
        self.header(self.top, CONTEXT_FILE_KEYS)
        try:
            entries = self.sequence(self.top["contexts"], "file skipped")
        except _Invalid:
            return
        seen: dict[tuple[str, str], Context] = {
            (t, c.normalised): c for c in self.loader.contexts for t in c.themes
        }
        for item in entries:
            try:
                self.context(item, seen)
            except _Invalid:
                pass

    def context(self, item: Node, seen: dict[tuple[str, str], Context]) -> None:
        skipped = "context skipped"
        m = self.mapping(item, CONTEXT_KEYS, skipped)
        text = self.text(self.required(m, item, "context", skipped), skipped)
        normalised = normalise_text(text)
        if not normalised:
            raise self.invalid(m["context"], f"{text!r} has no letters or digits; {skipped}")
        tv = self.required(m, item, "themes", skipped)
        if tv.data == "all":
            themes = THEMES
        else:
            themes = tuple(
                self.choice(t, THEMES, "theme", skipped) for t in self.sequence(tv, skipped)
            )
            if not themes:
                raise self.invalid(tv, f"lists no theme; {skipped}")
        language = self.language(m["language"], skipped) if "language" in m else DEFAULT_LANGUAGE
        for theme in themes:
            first = seen.get((theme, normalised))
            if first is not None:
                raise self.invalid(
                    m["context"], f"{text!r} is already a {theme} context ({first.source}); "
                                  f"{skipped}")
        c = Context(text, normalised, tuple(dict.fromkeys(themes)), language, self.where(item))
        self.loader.contexts.append(c)
        for theme in c.themes:
            seen[(theme, normalised)] = c

    def theme(self) -> None:
        tree, data = self.tree, self.top
        skipped = "file skipped"
        self.header(data, THEME_KEYS)
        try:
            theme = self.choice(data["theme"], THEMES, "theme", skipped)
            title = self.text(self.required(data, tree, "title", skipped), skipped)
            description = (self.text(data["description"], skipped)
                           if "description" in data else "")
            default = self.choice(self.required(data, tree, "severity", skipped), SEVERITIES,
                                  "severity", skipped)
            entries = (self.sequence(data["phrases"], skipped) if "phrases" in data else [])
            combinations = (self.sequence(data["combinations"], skipped)
                            if "combinations" in data else [])
            if not entries and not combinations:
                raise self.invalid(tree, "has neither phrases nor combinations; file skipped",
                                   "phrases")
            file_variants = self.boolean(data, "variants", skipped)
        except _Invalid:
            return
        info = self.loader.themes.get(theme)
        if info is None:
            self.loader.themes[theme] = ThemeInfo(theme, title, description, default,
                                                  (self.path,))
        else:
            self.loader.themes[theme] = ThemeInfo(info.name, info.title, info.description,
                                                  info.severity, (*info.files, self.path))
        contexts = [c for c in self.loader.contexts if theme in c.themes]
        for item in entries:
            try:
                self.phrase(item, theme, default, contexts, file_variants)
            except _Invalid:
                pass
        for item in combinations:
            try:
                self.combination(item, theme, default, contexts, file_variants)
            except _Invalid:
                pass

    def phrase(self, item: Node, theme: str, default: str, contexts: list[Context],
               file_variants: bool = False) -> None:
        skipped = "phrase skipped"
        if isinstance(item.data, dict):
            m = self.mapping(item, PHRASE_KEYS, skipped)
            text = self.text(self.required(m, item, "phrase", skipped), skipped)
        else:
            m = {}
            text = self.text(item, skipped)
        skipped = f"phrase {text!r} skipped"
        severity = (self.choice(m["severity"], SEVERITIES, "severity", skipped)
                    if "severity" in m else default)
        language = self.language(m["language"], skipped) if "language" in m else DEFAULT_LANGUAGE
        mode = self.choice(m["mode"], MODES, "mode", skipped) if "mode" in m else "word"
        weight = self.weight(m, skipped)
        ignore_contexts = self.boolean(m, "ignore_contexts", skipped)
        with_variants = self.boolean(m, "variants", skipped, file_variants)
        normalised = normalise_text(text)
        if not normalised:
            raise self.invalid(item, f"{text!r} has no letters or digits; {skipped}")
        if mode == "substring" and len(normalised.replace(" ", "")) < MIN_SUBSTRING:
            raise self.invalid(m["mode"], f"a substring needs at least {MIN_SUBSTRING} letters "
                                          f"({normalised!r} would be found inside too many "
                                          f"ordinary words; use word); {skipped}")
        padded = (f" {normalised}", f" {_joined(normalised)}")
        own = self.exclusions(m, skipped, padded)
        globals_: list[str] = []
        if not ignore_contexts:
            for c in contexts:
                if _starts_a_word_in(c.normalised, padded):
                    raise self.invalid(item, f"{text!r} holds the {theme} suppression context "
                                             f"{c.text!r} ({c.source}), so it could never flag; "
                                             f"reword it or set ignore_contexts; {skipped}")
                if c.normalised not in own:
                    globals_.append(c.normalised)
        self.check_duplicate(item, theme, text, normalised)
        try:
            phrase = Phrase.of(text, theme=theme, severity=cast(Severity, severity),
                               weight=weight, mode=cast(Mode, mode), language=language,
                               exclusions=[*own, *globals_])
        except ValueError as e:  # Phrase's own checks; the ones above should leave none
            raise self.invalid(item, f"{e}; {skipped}") from None
        entry = _Phrase(phrase, self.where(item), own)
        self.loader.phrases.append(entry)
        if with_variants and mode == "word":  # a substring is a stem already
            for form in sorted(variants(normalised)):
                # Its own contexts and exclusions still apply; a variant that holds a context
                # could never flag, so it is not made.
                if any(_starts_a_word_in(c, (f" {form}",)) for c in phrase.exclusions):
                    continue
                variant = Phrase(text=form, normalised=form, weight=weight, theme=theme,
                                 severity=cast(Severity, severity), mode=cast(Mode, mode),
                                 language=language, exclusions=phrase.exclusions)
                self.loader.variants.append((variant, entry.source, own, text))
        self.loader.seen.setdefault(theme, {})[normalised] = entry
        if " " in normalised:
            self.loader.joined.setdefault(theme, {})[_joined(normalised)] = entry

    def check_duplicate(self, item: Node, theme: str, text: str, normalised: str) -> None:
        """Two phrases that match the same texts would flag twice: "self harm" already matches
        "selfharm", and "Kill  Myself" is "kill myself"."""
        seen = self.loader.seen.get(theme, {})
        shared = normalised
        first = seen.get(normalised)
        if first is None and " " in normalised:
            shared = _joined(normalised)
            candidate = seen.get(shared)
            if candidate is not None and " " not in candidate.phrase.normalised:
                first = candidate
        if first is None and " " not in normalised:
            shared = normalised
            first = self.loader.joined.get(theme, {}).get(normalised)
        if first is not None:
            raise self.invalid(
                item, f"{text!r} duplicates {first.phrase.text!r} ({first.source}): both match "
                      f"{shared!r}; keep one; phrase skipped")


def _joined(normalised: str) -> str:
    # As KeywordSet stores a phrase of several words without its spaces.
    return normalise_text(normalised.replace(" ", ""))


def _starts_a_word_in(context: str, padded: tuple[str, ...]) -> bool:
    """Whether `context` occurs at a word start in a phrase (given as its normalised and joined
    forms, each after a space), as it would in any text holding the phrase: contexts match at
    a word start and may run on."""
    return any(f" {context}" in form for form in padded)

"""The keyword libraries in keywords/ and their loader: the shipped files load cleanly and
cover every theme and community language; obfuscated, misspelt and foreign-language searches are
flagged; educational, medical and support contexts suppress (and say why); ordinary school
searches are never flagged; and a broken file is reported by file, line and key while the rest
still loads."""

from __future__ import annotations

import pytest

from sample_school import REPO
from schoolgate.classify import Classifier
from schoolgate.classify.library import KeywordLibrary
from schoolgate.events import THEMES
from schoolgate.sources.keywords import load_library

ROOT = REPO
FOLDER = ROOT / "keywords"
HIGH_THEMES = ("suicide_selfharm", "extremism_radicalisation", "cse_grooming")
COMMUNITY_LANGUAGES = ("pl", "ur-Latn", "ar", "ro", "es")


@pytest.fixture(scope="module")
def library() -> KeywordLibrary:
    return load_library(FOLDER)


def flagged(library: KeywordLibrary, text: str) -> set[tuple[str, str]]:
    return {(f.theme, f.phrase) for f in library.match(text)}


# ---------------------------------------------------------------------------------------------
# The shipped library


def test_shipped_library_loads_without_problems(library):
    assert [str(p) for p in library.problems] == []
    assert len(library.files) == len(list(FOLDER.glob("*.yaml")))


@pytest.mark.parametrize("theme", THEMES)
def test_every_theme_has_its_file_and_at_least_40_phrases(library, theme):
    assert (FOLDER / f"{theme}.yaml").is_file()
    assert library.themes[theme].files[0] == str(FOLDER / f"{theme}.yaml")
    assert library.summary().by_theme[theme] >= 40


def test_high_severity_themes_are_the_documented_ones(library):
    assert library.summary().high_themes == HIGH_THEMES
    readme = (FOLDER / "README.md").read_text(encoding="utf-8")
    assert "`suicide_selfharm`,\n`extremism_radicalisation` and `cse_grooming`" in readme


@pytest.mark.parametrize("theme", HIGH_THEMES)
@pytest.mark.parametrize("language", COMMUNITY_LANGUAGES)
def test_high_severity_themes_have_a_handful_in_each_community_language(library, theme, language):
    assert library.summary().by_theme_language[theme].get(language, 0) >= 5


def test_summary_counts_add_up(library):
    s = library.summary()
    assert s.phrases == len(library) == len(library.phrases) == sum(s.by_theme.values())
    # The automaton holds the generated misspellings too, which are not entries.
    assert len(library.keyword_set) > s.phrases
    assert sum(s.by_language.values()) == s.phrases
    for theme, count in s.by_theme.items():
        assert sum(s.by_theme_language[theme].values()) == count
        assert sum(s.by_theme_severity[theme].values()) == count
    assert s.problems == 0 and s.contexts == len(library.contexts) > 50
    assert "suicide_selfharm" in str(s) and "by language" in str(s)


def test_every_phrase_flags_its_own_words(library):
    # Catches a phrase that an exclusion, a context or the normaliser would make unreachable.
    unreachable = [
        (p.theme, p.text)
        for p in library.phrases
        if (p.theme, p.text) not in flagged(library, p.text)
    ]
    assert unreachable == []


@pytest.mark.parametrize(
    ("text", "theme", "phrase"),
    [
        # Leetspeak, spacing, symbols, held-down letters, full-width letters.
        ("k1ll mys3lf", "suicide_selfharm", "kill myself"),
        ("#killmyself", "suicide_selfharm", "kill myself"),
        ("ｋｉｌｌ ｍｙｓｅｌｆ", "suicide_selfharm", "kill myself"),
        ("s u i c i d e", "suicide_selfharm", "suicide"),
        ("suiiiiicide", "suicide_selfharm", "suicide"),
        ("$uicide n0te", "suicide_selfharm", "suicide note"),
        ("#selfharm", "suicide_selfharm", "self harm"),
        ("self-harm tips", "suicide_selfharm", "self harm"),
        ("pr0-ana tips", "eating_disorders", "pro ana"),
        ("thinsp0", "eating_disorders", "thinspo"),
        ("s3nd nud3s", "cse_grooming", "send nudes"),
        ("j0in 1sis", "extremism_radicalisation", "join isis"),
        ("p0rn", "adult", "porn"),
        # Misspellings and abbreviations the normaliser cannot guess, so the library lists them.
        ("kil myself", "suicide_selfharm", "kil myself"),
        ("how 2 kms", "suicide_selfharm", "kms"),
        ("KMS tonight", "suicide_selfharm", "kms"),
        ("i want to run away and kms", "suicide_selfharm", "kms"),
        ("sucide", "suicide_selfharm", "sucide"),
        ("bulemia tips", "eating_disorders", "bulemia tips"),
        ("buy c0cain", "drugs", "cocain"),
        # Slang and algospeak.
        ("i want to unalive myself", "suicide_selfharm", "unalive myself"),
        ("sewerslide", "suicide_selfharm", "sewer slide"),
        ("kys", "bullying", "kys"),
        ("go kill urself", "bullying", "kill urself"),
        ("edtwt", "eating_disorders", "ed twt"),
        # Apostrophes typed or not.
        ("i don't want to live anymore", "suicide_selfharm", "don't want to live"),
        ("i dont want to live anymore", "suicide_selfharm", "dont want to live"),
    ],
)
def test_obfuscations_misspellings_and_slang_match(library, text, theme, phrase):
    assert (theme, phrase) in flagged(library, text)


@pytest.mark.parametrize(
    ("text", "theme", "language"),
    [
        # Polish, with and without its diacritics.
        ("chcę umrzeć", "suicide_selfharm", "pl"),
        ("chce umrzec", "suicide_selfharm", "pl"),
        ("jak popełnić samobójstwo", "suicide_selfharm", "pl"),
        ("jak dołączyć do isis", "extremism_radicalisation", "pl"),
        ("on mnie szantażuje mnie zdjęciami", "cse_grooming", "pl"),
        # Urdu in Latin script, and in Urdu script.
        ("main marna chahta hoon", "suicide_selfharm", "ur-Latn"),
        ("khudkushi kaise karein", "suicide_selfharm", "ur-Latn"),
        ("isis mein shamil hona", "extremism_radicalisation", "ur-Latn"),
        ("nangi photo bhejo", "cse_grooming", "ur-Latn"),
        ("میں مرنا چاہتا ہوں", "suicide_selfharm", "ur"),
        # Arabic, with harakat, hamza forms and the article or future prefix joined on.
        ("أُرِيدُ أَنْ أَمُوتَ", "suicide_selfharm", "ar"),
        ("سأنتحر", "suicide_selfharm", "ar"),
        ("ما هو الانتحار", "suicide_selfharm", "ar"),
        ("الانضمام إلى داعش", "extremism_radicalisation", "ar"),
        ("يبتزني بالصور", "cse_grooming", "ar"),
        # Romanian, with and without diacritics, and the suffixed article.
        ("vreau să mor", "suicide_selfharm", "ro"),
        ("cum sa ma sinucid", "suicide_selfharm", "ro"),
        ("sinuciderea", "suicide_selfharm", "ro"),
        ("moarte necredincioșilor", "extremism_radicalisation", "ro"),
        ("mă șantajează cu poze", "cse_grooming", "ro"),
        # Spanish.
        ("quiero morirme", "suicide_selfharm", "es"),
        ("como suicidarse", "suicide_selfharm", "es"),
        ("cómo unirse a isis", "extremism_radicalisation", "es"),
        ("pásame tu pack", "cse_grooming", "es"),
    ],
)
def test_community_languages_match(library, text, theme, language):
    assert any(f.theme == theme and f.language == language for f in library.match(text)), (
        library.explain(text)
    )


# ---------------------------------------------------------------------------------------------
# Suppression


@pytest.mark.parametrize(
    ("plain", "in_context", "phrase", "kind", "by"),
    [
        # Global contexts: support, education, medicine.
        ("self harm groups", "self harm support groups", "self harm", "context",
         "self harm support"),
        ("suicide", "childline suicide", "suicide", "context", "childline"),
        ("how to overdose", "samaritans how to overdose", "how to overdose", "context",
         "samaritans"),
        ("the sieg heil salute", "history of the holocaust and the sieg heil salute",
         "sieg heil", "context", "history of the holocaust"),
        ("lesson on porn", "sex education lesson on porn", "porn", "context", "sex education"),
        ("boobs", "breast cancer check your boobs", "boobs", "context", "breast cancer"),
        ("pro ana", "beat eating disorders pro ana", "pro ana", "context",
         "beat eating disorders"),
        # A phrase's own exclusions.
        ("shoot", "photo shoot", "shoot", "exclude", "photo"),
        ("shoot ideas", "photography shoot ideas", "shoot", "exclude", "photo"),
        ("kill", "kill process", "kill", "exclude", "process"),
        ("kill", "kill the process", "kill", "exclude", "process"),
        ("kms", "how many kms to paris", "kms", "exclude", "how many kms"),
        ("samobójstwo", "gol samobójczy", "samobój", "exclude", "gol"),
    ],
)
def test_required_suppressions_work_and_say_why(library, plain, in_context, phrase, kind, by):
    # Without the context the phrase is flagged; with it, suppressed, with the reason.
    assert phrase in {f.phrase for f in library.match(plain)}
    findings = library.explain(in_context)
    assert phrase not in {f.phrase for f in findings.flags}
    suppressed = [s for s in findings.suppressed if s.flag.phrase == phrase]
    assert [(s.kind, s.by) for s in suppressed] == [(kind, by)]
    assert repr(by) in suppressed[0].reason and ".yaml:" in suppressed[0].reason


@pytest.mark.parametrize(
    "text",
    [
        "i want to kill myself childline",
        "self harm support but i still want to die",
        "ceop someone has my nudes",
        "bbc bitesize kill the kuffar",
    ],
)
def test_first_person_intent_is_never_hidden_by_a_context(library, text):
    assert any(c.normalised in text for c in library.contexts)
    assert any(f.severity == "high" for f in library.match(text))


def test_exclusions_of_a_bare_word_never_hide_a_specific_threat(library):
    # "shoot" is excluded beside "game" and "kill" beside "minecraft", but the threats are
    # phrases of their own, without those exclusions.
    assert flagged(library, "game where i shoot up the school") == {
        ("weapons_violence", "shoot up the school"),
    }
    assert flagged(library, "minecraft is boring i will kill my teacher") == {
        ("weapons_violence", "kill my teacher"),
    }


def test_a_match_inside_a_longer_flag_is_suppressed_not_doubled(library):
    findings = library.explain("how to commit suicide")
    assert [f.phrase for f in findings.flags] == ["how to commit suicide"]
    assert {(s.flag.phrase, s.kind, s.by) for s in findings.suppressed} == {
        ("commit suicide", "inside", "how to commit suicide"),
        ("suicide", "inside", "how to commit suicide"),
    }
    # Across themes too: "nudes" (adult, low) inside "send nudes" (cse_grooming, high).
    assert flagged(library, "send nudes") == {("cse_grooming", "send nudes")}


# Searches pupils and staff make every day. A flag here would be a false alarm for the DSL:
# fix the library (a phrase, an exclusion), never this list.
EVERYDAY_SEARCHES = [
    # Science and maths.
    "volcano facts", "photosynthesis", "cell division mitosis", "sex cells biology",
    "root and shoot system", "shoot in plants biology", "antibiotics kill bacteria",
    "bomb calorimeter chemistry", "acid rain", "cumulus clouds", "speed distance time calculator",
    "how many kms from london to paris", "convert 5 kms to miles", "pythagoras theorem",
    "killer whale facts", "naked mole rat", "shooting star", "maine coon cat",
    "great tits bird", "blue tits nesting box",
    # English literature.
    "romeo and juliet summary", "romeo and juliet suicide scene", "how did romeo commit suicide",
    "to kill a mockingbird themes", "why does macbeth kill duncan",
    "of mice and men why does george shoot lennie", "an inspector calls eva smith suicide",
    "lord of the flies piggy death", "moby dick summary", "the hate u give summary",
    "chink in the armour meaning",
    # History, RE and sociology.
    "how did hitler rise to power", "did hitler commit suicide", "holocaust memorial day",
    "molotov ribbentrop pact", "the blitz bombing of london", "gunpowder plot guy fawkes",
    "nuclear bomb hiroshima", "proxy war cold war", "nazi germany gcse history",
    "pounds shillings and pence lsd", "durkheim suicide sociology", "assisted suicide debate",
    "national action plan for climate", "hanging gardens of babylon",
    # Computing.
    "kill process linux", "what is a vpn gcse computer science",
    # Sport, art, home and everyday life.
    "how to shoot a basketball", "photo shoot ideas", "how to tie dye a shirt",
    "how to die hair blue", "how to get high marks in english", "how to kill time on a long flight",
    "how to get rid of weeds", "how to make a bath bomb", "chicken breast recipe",
    "breast stroke technique", "faggots and peas recipe", "diet coke calories",
    "how to boil water fast", "how to stop eating junk food", "dog grooming near me",
    "sugar baby watermelon", "i cut myself shaving", "i hurt myself playing football",
    "minecraft how to kill the ender dragon", "suicide squad cast",
    "i am going to kill it in my exam",
    "gol samobójczy lewandowski", "white power bank", "find a plug socket adapter",
]


@pytest.mark.parametrize("text", EVERYDAY_SEARCHES)
def test_everyday_school_searches_are_not_flagged(library, text):
    assert library.match(text) == []


def test_flag_fields(library):
    (flag,) = library.match("How to K1LL   mys3lf?")
    assert (flag.phrase, flag.theme, flag.severity, flag.language) == (
        "kill myself", "suicide_selfharm", "high", "en",
    )
    # The matched span of the normalised text, with offsets into it.
    assert flag.text == "kill myself" and (flag.start, flag.end) == (7, 18)
    path, line = flag.source.rsplit(":", 1)
    assert path == str(FOLDER / "suicide_selfharm.yaml")
    assert "kill myself" in (FOLDER / "suicide_selfharm.yaml").read_text("utf-8").splitlines()[
        int(line) - 1
    ]


def test_the_classifier_runs_the_library_as_one_keyword_set(library):
    classifier = Classifier(library=library)
    c = classifier.classify("https://www.google.com/search?q=how+to+k%31ll+myself&hl=en")
    findings = library.findings(c.keywords)
    assert [(f.theme, f.phrase) for f in findings.flags] == [("suicide_selfharm", "kill myself")]
    # Global contexts are folded into each phrase's exclusions, so the set alone suppresses.
    c = classifier.classify("https://www.google.com/search?q=childline+suicide")
    assert c.keywords == ()


# ---------------------------------------------------------------------------------------------
# The loader's reports


def _line_of(text: str, needle: str) -> int:
    (number,) = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    return number


BROKEN_DRUGS = """\
theme: drugs
title: Drugs (a school's own file)
severity: medium
phrases:
  - buy weed
  - {phrase: roll a spliff, severity: hgih}
  - {phrase: nos balloons, exlude: [party]}
  - {severity: high}
  - Buy  Weed
  - {phrase: ket, mode: substring}
  - {phrase: lean drink, exclude: [lean]}
  - {phrase: purple drank, language: "polish!"}
  - {phrase: monkey dust, weight: lots}
  - 1488
  - {phrase: laughing gas balloons, severity: low}
"""


def test_a_broken_file_is_reported_by_file_line_and_key_and_the_rest_loads(tmp_path):
    (tmp_path / "local-drugs.yaml").write_text(BROKEN_DRUGS, encoding="utf-8")
    library = load_library(tmp_path)
    path = str(tmp_path / "local-drugs.yaml")
    line = lambda needle: _line_of(BROKEN_DRUGS, needle)  # noqa: E731
    messages = [str(p) for p in library.problems]
    expected = [
        (line("hgih"), "phrases[1].severity: unknown severity 'hgih' (allowed: high, medium, "
                       "low); did you mean 'high'?; phrase 'roll a spliff' skipped"),
        (line("exlude"), "phrases[2].exlude: unknown key (allowed: phrase, severity, language, "
                         "mode, weight, exclude, ignore_contexts, variants); did you mean 'exclude'?; "
                         "phrase skipped"),
        (line("severity: high}"), "phrases[3].phrase: is required but missing; phrase skipped"),
        (line("Buy  Weed"), f"phrases[4]: 'Buy  Weed' duplicates 'buy weed' "
                            f"({path}:{line('- buy weed')}): both match 'buy weed'; keep one; "
                            f"phrase skipped"),
        (line("ket"), "phrases[5].mode: a substring needs at least 4 letters ('ket' would be "
                      "found inside too many ordinary words; use word); phrase 'ket' skipped"),
        (line("[lean]"), "phrases[6].exclude[0]: 'lean' is part of the phrase itself, so the "
                         "phrase could never flag; phrase 'lean drink' skipped"),
        (line("polish"), "phrases[7].language: unknown language 'polish!' (allowed: a language "
                         "code such as en, pl, ur, ar, ro, es, with a script if needed, such as "
                         "ur-Latn); phrase 'purple drank' skipped"),
        (line("lots"), "phrases[8].weight: must be a number from -100 to 100, not text 'lots'; "
                       "phrase 'monkey dust' skipped"),
        (line("1488"), "phrases[9]: must be non-empty text, not a number (quote it); "
                       "phrase skipped"),
    ]
    assert messages == [f"{path}:{n}: {m}" for n, m in expected]
    # Everything else in the file loaded, with the file's defaults.
    assert {p.text: p.severity for p in library.phrases} == {
        "buy weed": "medium",
        "laughing gas balloons": "low",
    }
    assert flagged(library, "where can i buy weed") == {("drugs", "buy weed")}


def test_file_level_problems_skip_the_file_and_name_the_allowed_values(tmp_path):
    ok = "title: Drugs\nseverity: medium\nphrases: [buy weed]\n"
    files = {
        "a-unknown-theme.yaml": "theme: drug\n" + ok,
        "b-bad-severity.yaml": "theme: drugs\ntitle: Drugs\nseverity: urgent\nphrases: [x]\n",
        "c-no-title.yaml": "theme: drugs\nseverity: medium\nphrases: [buy weed]\n",
        "d-not-yaml.yaml": "theme: drugs\nphrases: [buy weed\n",
        "e-neither.yaml": "phrases: [buy weed]\n",
        "f-good.yaml": "theme: drugs\nnotes: ours\n" + ok,
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    library = load_library(tmp_path)
    messages = [str(p).removeprefix(str(tmp_path) + "/") for p in library.problems]
    assert messages == [
        "a-unknown-theme.yaml:1: theme: unknown theme 'drug' (allowed: "
        + ", ".join(THEMES) + "); did you mean 'drugs'?; file skipped",
        "b-bad-severity.yaml:3: severity: unknown severity 'urgent' (allowed: high, medium, "
        "low); file skipped",
        "c-no-title.yaml:1: title: is required but missing; file skipped",
        "d-not-yaml.yaml:3: not valid YAML: did not find expected ',' or ']'; file skipped",
        "e-neither.yaml:1: a keyword file starts with `theme:` (a theme's phrases), "
        "`contexts:` (suppression contexts) or `classes:` (word classes for combinations), "
        "not none of them; file skipped",
        "f-good.yaml:2: notes: unknown key (allowed: theme, title, description, severity, "
        "variants, phrases, combinations); ignored",
    ]
    assert [p.text for p in library.phrases] == ["buy weed"]
    assert library.themes["drugs"].files == (str(tmp_path / "f-good.yaml"),)


def test_contexts_file_problems_and_a_school_file_joining_a_theme(tmp_path):
    (tmp_path / "contexts.yaml").write_text(
        "contexts:\n"
        "  - {context: frank, themes: [drugs]}\n"
        "  - {context: frank, themes: [drugs]}\n"
        "  - {context: weed out, themes: [drugz]}\n"
        "  - {context: lesson, themes: all}\n",
        encoding="utf-8",
    )
    (tmp_path / "drugs.yaml").write_text(
        "theme: drugs\ntitle: Drugs\nseverity: medium\n"
        "phrases:\n  - buy weed\n  - {phrase: frank dealer}\n  - {phrase: ket, severity: low}\n",
        encoding="utf-8",
    )
    (tmp_path / "our-school.yaml").write_text(
        "theme: drugs\ntitle: Local slang\nseverity: high\n"
        "phrases:\n  - ket\n  - bag of ket\n  - {phrase: frank dealer x, ignore_contexts: true}\n",
        encoding="utf-8",
    )
    library = load_library(tmp_path)
    contexts, drugs, ours = (str(tmp_path / n) for n in ("contexts.yaml", "drugs.yaml",
                                                         "our-school.yaml"))
    assert [str(p) for p in library.problems] == [
        f"{contexts}:3: contexts[1].context: 'frank' is already a drugs context "
        f"({contexts}:2); context skipped",
        f"{contexts}:4: contexts[2].themes[0]: unknown theme 'drugz' (allowed: "
        + ", ".join(THEMES) + "); did you mean 'drugs'?; context skipped",
        f"{drugs}:6: phrases[1]: 'frank dealer' holds the drugs suppression context 'frank' "
        f"({contexts}:2), so it could never flag; reword it or set ignore_contexts; "
        f"phrase 'frank dealer' skipped",
        f"{ours}:5: phrases[0]: 'ket' duplicates 'ket' ({drugs}:7): both match 'ket'; keep one; "
        f"phrase skipped",
    ]
    # The theme's own file sets the theme's title and default; the school's file adds to it.
    assert library.themes["drugs"].title == "Drugs"
    assert library.themes["drugs"].files == (drugs, ours)
    assert {(p.text, p.severity) for p in library.phrases} == {
        ("buy weed", "medium"), ("ket", "low"), ("bag of ket", "high"),
        ("frank dealer x", "high"),
    }
    # "lesson" applies to every theme; ignore_contexts keeps a phrase visible beside it.
    assert library.match("buy weed lesson") == []
    assert [f.phrase for f in library.match("frank dealer x lesson")] == ["frank dealer x"]


def test_a_key_given_twice_or_not_text_is_reported_and_the_file_still_loads(tmp_path):
    # The tree is config.yamltree's, shared with the config checker; the notes are the
    # keyword loader's, which keeps the first value and goes on ("keep one" is the config's).
    path = tmp_path / "drugs.yaml"
    path.write_text(
        "theme: drugs\ntitle: Drugs\nseverity: medium\nseverity: high\n"
        "phrases:\n  - buy weed\n  - {phrase: bag of ket, 7: x}\n",
        encoding="utf-8",
    )
    library = load_library(tmp_path)
    assert [str(p) for p in library.problems] == [
        f"{path}:4: severity: given twice (first on line 3); the first is used",
        f"{path}:7: phrases[1]: key 7 must be text; ignored",
    ]
    assert {(p.text, p.severity) for p in library.phrases} == {
        ("buy weed", "medium"), ("bag of ket", "medium"),
    }


def test_missing_or_empty_folder_is_a_problem_not_a_crash(tmp_path):
    missing = load_library(tmp_path / "nope")
    assert [str(p) for p in missing.problems] == [f"{tmp_path / 'nope'}: keyword folder not found"]
    assert missing.match("kill myself") == []
    empty = load_library(tmp_path)
    assert [str(p) for p in empty.problems] == [f"{tmp_path}: no *.yaml keyword files"]

"""The category-list cache at start-up: a large list set is compiled by a child process (so the
gateway's own memory holds only the loaded arrays), a small one in process; a failing child
leaves the build to this process, and the result is the same classifier either way."""

from __future__ import annotations

import logging

import pytest

from schoolgate.classify.index import ListIndex, sources_fingerprint
from schoolgate.sources import lists as lists_source


def _classify(classifier, url):
    return sorted(classifier.classify(url).categories)


@pytest.fixture
def large(monkeypatch):
    """Every list set counts as large (the real threshold is 4 MiB of list files)."""
    monkeypatch.setattr(lists_source, "CHILD_BUILD_BYTES", 0)


def test_a_large_list_set_is_compiled_by_a_child_process(config, large, caplog, monkeypatch):
    built_here = []
    real_build = ListIndex.build
    monkeypatch.setattr(ListIndex, "build", classmethod(
        lambda cls, sources: built_here.append(1) or real_build(sources)))
    with caplog.at_level(logging.DEBUG, logger="schoolgate.lists"):
        classifier = lists_source.build_classifier(config, cache=True)
    # The child wrote the cache; this process only loaded it (the child's own build is in
    # another interpreter, where the patch above does not exist).
    assert built_here == []
    assert classifier.loaded_from_cache
    assert "built:" in caplog.text
    assert_first_build_is_quiet(caplog)
    sources = lists_source.category_sources(config)
    ListIndex.load(lists_source.cache_path(config), sources_fingerprint(sources))  # current
    uncached = lists_source.build_classifier(config, cache=False)
    assert _classify(classifier, "http://www.bet365.com/") == ["gambling"]
    for url in ("http://www.bet365.com/", "http://example.org/", "http://www.bbc.co.uk/news"):
        assert _classify(classifier, url) == _classify(uncached, url)


def assert_first_build_is_quiet(caplog) -> None:
    # Issue #15: a first start logged "cannot be read ([Errno 2] No such file...)" for a cache
    # that was never there. The start-up says once what it creates; building it is no news.
    assert [r.getMessage() for r in caplog.records if r.levelno > logging.DEBUG] == []


def test_a_small_list_set_is_compiled_in_process(config, caplog):
    with caplog.at_level(logging.DEBUG, logger="schoolgate.lists"):
        classifier = lists_source.build_classifier(config, cache=True)
    assert not classifier.loaded_from_cache
    assert "rebuilt from the list files" in caplog.text
    assert "built:" not in caplog.text
    assert_first_build_is_quiet(caplog)


def test_a_stale_cache_is_rebuilt_and_says_why(config, caplog):
    lists_source.build_classifier(config, cache=True)  # makes the cache
    cache = lists_source.cache_path(config)
    cache.write_bytes(b"not a cache")
    with caplog.at_level(logging.INFO, logger="schoolgate.lists"):
        classifier = lists_source.build_classifier(config, cache=True)
    assert not classifier.loaded_from_cache
    (said,) = [r for r in caplog.records if r.levelno == logging.INFO]
    assert said.getMessage().startswith(f"list cache {cache}: ")
    assert said.getMessage().endswith("rebuilt from the list files")


def test_a_cache_that_cannot_be_written_is_a_warning(config, caplog):
    lists_source.cache_path(config).parent.parent.mkdir(parents=True, exist_ok=True)
    lists_source.cache_path(config).parent.write_text("a file where the cache folder goes")
    with caplog.at_level(logging.INFO, logger="schoolgate.lists"):
        classifier = lists_source.build_classifier(config, cache=True)
    assert _classify(classifier, "http://www.bet365.com/") == ["gambling"]
    (said,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "the cache was not written" in said.getMessage()


def test_a_current_cache_starts_no_child(config, large, monkeypatch):
    lists_source.build_classifier(config, cache=True)  # makes the cache
    monkeypatch.setattr(lists_source.subprocess, "run", lambda *a, **k: pytest.fail("child"))
    assert lists_source.build_classifier(config, cache=True).loaded_from_cache


def test_a_failing_child_leaves_the_build_to_this_process(config, large, caplog, monkeypatch):
    monkeypatch.setattr(lists_source, "builder_command",
                        lambda c: [lists_source.sys.executable, "-c", "raise SystemExit(3)"])
    with caplog.at_level(logging.DEBUG, logger="schoolgate.lists"):
        classifier = lists_source.build_classifier(config, cache=True)
    assert "list cache build in a child process failed (3)" in caplog.text
    assert not classifier.loaded_from_cache
    assert "rebuilt from the list files" in caplog.text
    assert _classify(classifier, "http://www.bet365.com/") == ["gambling"]

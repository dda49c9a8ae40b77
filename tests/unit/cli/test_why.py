"""`schoolgate why` explains every match, not only the deciding one, and never an illegal entry."""

from __future__ import annotations

import json

from sample_school import BASE_CONFIG, BASE_LISTS, replace_once
from schoolgate import cli

# A host on two category lists (social_networks by its domain, gambling by a deeper subdomain
# entry), and on a plain illegal list whose entry must never be printed.
LISTS = dict(BASE_LISTS, social_networks="facebook.com\n", gambling="bet365.com\npoker.facebook.com\n",
             illegal="secret-illegal.example.org/hidden/page.html\n")
CONFIG = replace_once(
    BASE_CONFIG,
    "default_group: guest\n",
    "default_group: guest\nillegal_lists:\n  iwf:\n    title: IWF test\n    kind: iwf\n"
    "    source: lists/illegal\n    form: plain\n",
)


def _why(write_config, capsys, *args: str) -> list[dict]:
    status = cli.main(["why", "--json", "--config", str(write_config(CONFIG, LISTS)), *args])
    out, err = capsys.readouterr()
    assert status == 0, err
    return [json.loads(line) for line in out.splitlines()]


def test_every_category_match_is_listed_with_entry_list_and_line(write_config, capsys, tmp_path):
    (r,) = _why(write_config, capsys, "--group", "sixth_form", "https://poker.facebook.com/table")
    # sixth_form blocks gambling only: the deeper gambling entry decides.
    assert (r["action"], r["category"], r["matched_entry"]) == ("block", "gambling", "poker.facebook.com")
    assert r["matches"] == [
        {"category": "gambling", "kind": "domain", "entry": "poker.facebook.com",
         "list": str(tmp_path / "lists" / "gambling"), "line": 2, "blocked_for_group": True},
        {"category": "social_networks", "kind": "domain", "entry": "facebook.com",
         "list": str(tmp_path / "lists" / "social_networks"), "line": 1, "blocked_for_group": False},
    ]


def test_text_output_shows_the_other_matches(write_config, capsys, tmp_path):
    status = cli.main(["why", "--config", str(write_config(CONFIG, LISTS)), "--group", "sixth_form",
                       "https://poker.facebook.com/"])
    out, _ = capsys.readouterr()
    assert status == 0
    assert "  matched     poker.facebook.com (" in out
    assert (f"  also        social_networks: facebook.com ({tmp_path / 'lists' / 'social_networks'}, "
            "line 1, domain entry; allowed for this group)") in out


def test_an_illegal_match_names_the_list_never_the_entry(write_config, capsys):
    url = "http://secret-illegal.example.org/hidden/page.html"
    (r,) = _why(write_config, capsys, "--group", "staff", url)
    assert (r["action"], r["illegal_list"], r["reason"]) == ("block", "iwf", "illegal:iwf")
    assert r["matches"] == []
    assert r["matched_entry"] is None
    # The lookup expressions are computed from the request, so they name the URL the technician
    # typed; nothing else in the answer may carry the list's own text.
    rest = {k: v for k, v in r.items() if k not in ("url", "normalised_url", "canonical_url",
                                                    "lookup_expressions", "host")}
    assert "hidden" not in json.dumps(rest)
    cli.main(["why", "--config", str(write_config(CONFIG, LISTS)), "--group", "staff", url])
    out, _ = capsys.readouterr()
    assert "illegal     on the illegal-content list iwf" in out
    assert "also" not in out


def test_no_match_gives_empty_lists(write_config, capsys):
    (r,) = _why(write_config, capsys, "https://example.com/")
    assert (r["action"], r["matches"], r["keywords"]) == ("allow", [], [])


def test_decrypt_follows_the_groups_https_mode(write_config, capsys):
    """`decrypt` and `decrypt_reason` are the TLS decisions' own predicate for the group."""
    text = replace_once(CONFIG, "    title: Sixth form\n",
                        "    title: Sixth form\n    https: selective\n")
    text = replace_once(text, "    title: Guest Wi-Fi\n", "    title: Guest Wi-Fi\n    https: sni-only\n")
    path = str(write_config(text, LISTS))

    def why(group: str, url: str) -> tuple[bool, str]:
        assert cli.main(["why", "--json", "--config", path, "--group", group, url]) == 0
        r = json.loads(capsys.readouterr().out)
        return r["decrypt"], r["decrypt_reason"]

    assert why("staff", "https://facebook.com/") == (True, "group-decrypts-all")
    assert why("guest", "https://www.google.com/search?q=x") == (False, "sni-only")
    # selective: a host with a URL-level illegal entry, a search engine, and one decided by name.
    assert why("sixth_form", "https://secret-illegal.example.org/") == (True, "illegal-url-entry")
    assert why("sixth_form", "https://www.google.com/") == (True, "safe-search")
    assert why("sixth_form", "https://facebook.com/some/page") == (False, "host-only")
    # The text output says it too.
    assert cli.main(["why", "--config", path, "--group", "sixth_form", "https://facebook.com/"]) == 0
    assert "  https       not decrypted (decided by host name): host-only" in capsys.readouterr().out


def test_decrypt_keys_are_null_for_a_url_that_cannot_be_read(write_config, capsys):
    status = cli.main(["why", "--json", "--config", str(write_config(CONFIG, LISTS)), "http://[bad"])
    r = json.loads(capsys.readouterr().out)
    assert status == 1 and r["error"] and (r["decrypt"], r["decrypt_reason"]) == (None, None)

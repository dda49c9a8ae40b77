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


# ---------------------------------------------------------------------------------------------
# The gateway's verdict (#15): who the address is, as the gateway's identity sources say, and the
# decisions made before the request (tests/e2e/test_why_agrees.py checks them against the gateway).


def test_ip_is_identified_as_the_gateway_identifies_it(write_config, capsys, tmp_path):
    """An address in the secondary subnet that the IP map names as a member of staff is decided
    for staff, as the gateway decides it, not for its subnet's group."""
    (tmp_path / "ip-map.csv").write_text("ip,user\n10.20.1.9,teacher1\n", encoding="utf-8")
    (tmp_path / "user-groups.csv").write_text("user,group\nteacher1,staff\n", encoding="utf-8")
    text = CONFIG + (f"identity:\n  ip_map: {tmp_path / 'ip-map.csv'}\n"
                     f"  user_groups: {tmp_path / 'user-groups.csv'}\n")
    path = str(write_config(text, LISTS))
    status = cli.main(["why", "--json", "--config", path, "--ip", "10.20.1.9",
                       "https://www.bet365.com/"])
    r = json.loads(capsys.readouterr().out)
    assert status == 0
    assert (r["group"], r["group_source"], r["action"]) == ("staff", "user-csv", "allow")
    # Another address of the same subnet is still the subnet's.
    (r,) = _why(write_config, capsys, "--ip", "10.20.1.10", "https://www.bet365.com/")
    assert (r["group"], r["group_source"], r["action"]) == ("secondary", "subnet", "block")


def test_a_connect_to_a_port_outside_the_allowed_ones_is_refused_there(write_config, capsys):
    (r,) = _why(write_config, capsys, "--group", "staff", "https://example.com:2222/")
    assert (r["action"], r["reason"], r["stage"]) == ("block", "circumvention:port", "connect")
    # Plain http to the same port is no tunnel: it is decided by its request.
    (r,) = _why(write_config, capsys, "--group", "staff", "http://example.com:2222/")
    assert (r["action"], r["reason"], r["stage"]) == ("allow", "no-block", "request")


def test_a_host_not_decrypted_is_decided_by_its_name(write_config, capsys):
    text = replace_once(CONFIG, "    title: Guest Wi-Fi\n", "    title: Guest Wi-Fi\n    https: sni-only\n")
    lists = dict(LISTS, gambling="bet365.com\nexample.org/casino/\n")
    path = str(write_config(text, lists))
    # The URL entry would block the page, but nothing inside the connection is seen.
    assert cli.main(["why", "--json", "--config", path, "--group", "guest",
                     "https://example.org/casino/table"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert (r["action"], r["reason"], r["stage"]) == ("allow", "tls:passthrough", "handshake")
    assert r["matches"][0]["entry"] == "example.org/casino/"  # still shown, for the technician
    assert r["rule"] == "passed through undecrypted: group guest is SNI-only"


def test_a_url_that_cannot_be_read_is_a_bad_request(write_config, capsys):
    status = cli.main(["why", "--json", "--config", str(write_config(CONFIG, LISTS)),
                       "http://example.org:99999/"])
    r = json.loads(capsys.readouterr().out)
    assert status == 1 and "is not a URL" in r["error"]
    assert (r["action"], r["reason"]) == ("block", "bad-request")
    assert (r["canonical_url"], r["normalised_url"], r["matches"], r["decrypt"]) == (
        None, None, [], None)


def test_a_url_that_can_be_classified_but_not_sent_is_refused_with_its_canonical_form(
        write_config, capsys):
    # No server can be called "bad!host.example": the gateway refuses it (400), and `why`
    # still shows its canonical form, which is what a list entry for it would match.
    status = cli.main(["why", "--json", "--config", str(write_config(CONFIG, LISTS)),
                       "http://bad!host.example/"])
    r = json.loads(capsys.readouterr().out)
    assert status == 1
    assert (r["action"], r["reason"], r["stage"]) == ("block", "bad-request", "request")
    assert r["error"] == "'bad!host.example' is not a host name any server can have"
    assert r["rule"] == "bad request (400): " + r["error"]
    assert (r["normalised_url"], r["canonical_url"]) == ("http://bad!host.example/",
                                                         "http://bad!host.example/")


def test_a_header_without_a_colon_is_a_usage_error(write_config, capsys):
    status = cli.main(["why", "--config", str(write_config(CONFIG, LISTS)), "--header", "Accept",
                       "https://example.com/"])
    assert status == 2
    assert "--header: 'Accept' is not NAME: VALUE" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# The search (#15): one `search` object in `why --json`, with the gateway's own score and the
# group's threshold; `keywords` holds only what the address has outside the search term.

KEYWORDS = {
    "selfharm.yaml": "theme: suicide_selfharm\ntitle: Suicide and self-harm\nseverity: high\n"
                     "phrases:\n  - kill myself\n  - {phrase: suicide, severity: medium}\n",
    "bullying.yaml": "theme: bullying\ntitle: Bullying\nseverity: medium\n"
                     "phrases:\n  - nobody likes me\n",
}


def _keyword_config(write_config, tmp_path, threshold: str | None = None) -> str:
    folder = tmp_path / "keywords"
    folder.mkdir(exist_ok=True)
    for name, text in KEYWORDS.items():
        (folder / name).write_text(text, encoding="utf-8")
    text = CONFIG + f"keywords:\n  library: {folder}\n"
    if threshold is not None:
        text = replace_once(text, "    title: Staff\n",
                            f"    title: Staff\n    keyword_threshold: {threshold}\n")
    return str(write_config(text, LISTS))


def _why_one(capsys, path: str, *args: str) -> dict:
    status = cli.main(["why", "--json", "--config", path, *args])
    out, err = capsys.readouterr()
    assert status == 0, err
    (line,) = out.splitlines()
    return json.loads(line)


def test_a_search_shows_engine_term_score_threshold_and_matches(write_config, capsys, tmp_path):
    path = _keyword_config(write_config, tmp_path)
    r = _why_one(capsys, path, "--group", "guest", "https://www.bing.com/search?q=K1ll+Mys3lf")
    assert r["search"] == {
        "engine": "bing",
        "term": "K1ll Mys3lf",  # decoded, as typed
        "normalised": "kill myself",
        "score": 10,
        "threshold": 10,
        "matches": [{"rule": "kill myself", "phrase": "kill myself", "theme": "suicide_selfharm",
                     "severity": "high", "matched": "kill myself"}],
    }
    # The score reaches the threshold: the gateway's verdict says so.
    assert (r["action"], r["reason"]) == ("block", "keywords")
    # The term's own match is the search's, not the address's.
    assert r["keywords"] == []


def test_the_score_is_the_one_the_threshold_is_compared_with(write_config, capsys, tmp_path):
    # Staff block at 20: one high phrase (10) is recorded, not blocked; with a medium one (3)
    # and another medium (3) it is 16, still below; the threshold at 16 blocks the same search.
    url = "https://www.bing.com/search?q=kill+myself+suicide+nobody+likes+me"
    r = _why_one(capsys, _keyword_config(write_config, tmp_path, "20"), "--group", "staff", url)
    assert (r["search"]["score"], r["search"]["threshold"]) == (16, 20)
    assert [m["phrase"] for m in r["search"]["matches"]] == ["kill myself", "suicide",
                                                            "nobody likes me"]
    assert (r["action"], r["reason"]) == ("allow", "no-block")
    r = _why_one(capsys, _keyword_config(write_config, tmp_path, "16"), "--group", "staff", url)
    assert (r["search"]["score"], r["search"]["threshold"], r["action"]) == (16, 16, "block")


def test_keywords_are_the_address_outside_the_search_term(write_config, capsys, tmp_path):
    path = _keyword_config(write_config, tmp_path)
    r = _why_one(capsys, path, "--group", "staff",
                 "https://www.bing.com/search?q=kill+myself&form=suicide")
    assert [m["phrase"] for m in r["search"]["matches"]] == ["kill myself"]
    assert r["keywords"] == [{"phrase": "suicide", "theme": "suicide_selfharm",
                              "severity": "medium", "matched": "suicide"}]
    # An address that is no search: no `search`, its matches in `keywords`.
    r = _why_one(capsys, path, "--group", "staff", "https://example.com/how-to-kill-myself")
    assert r["search"] is None
    assert [m["phrase"] for m in r["keywords"]] == ["kill myself"]
    # A search with nothing in the library: a score of 0.
    r = _why_one(capsys, path, "--group", "staff", "https://www.google.com/search?q=volcanoes")
    assert (r["search"]["term"], r["search"]["score"], r["search"]["matches"]) == (
        "volcanoes", 0, [])


def test_a_search_sent_in_the_body_is_read_from_data(write_config, capsys, tmp_path):
    path = _keyword_config(write_config, tmp_path)
    args = ["--group", "guest", "--data", "q=kill+myself", "--header",
            "Content-Type: application/x-www-form-urlencoded", "https://html.duckduckgo.com/html/"]
    r = _why_one(capsys, path, *args)
    assert (r["search"]["engine"], r["search"]["term"]) == ("duckduckgo", "kill myself")
    assert (r["action"], r["reason"], r["stage"]) == ("block", "keywords", "body")
    # Without the body the same address is no search yet (the gateway reads it at `request`).
    r = _why_one(capsys, path, "--group", "guest", "--method", "POST",
                 "https://html.duckduckgo.com/html/")
    assert (r["search"], r["action"], r["stage"]) == (None, "allow", "request")


def test_text_output_shows_the_search(write_config, capsys, tmp_path):
    path = _keyword_config(write_config, tmp_path)
    assert cli.main(["why", "--config", path, "--group", "guest",
                     "https://www.bing.com/search?q=kill+myself"]) == 0
    out = capsys.readouterr().out
    assert "  search      bing: 'kill myself' (score 10; the group blocks at 10)" in out
    assert "  phrase      'kill myself' (suicide_selfharm, high)" in out


def test_blocked_for_group_is_read_at_the_time_asked(write_config, capsys):
    """`--at` decides every part of the answer, the other matches' "blocked for this group"
    included (it was read at the real time while the verdict was read at `--at`)."""
    text = replace_once(CONFIG, "default_group: guest\n", "default_group: guest\nschedules:\n"
                        "  lessons:\n    title: Lessons\n    windows: [\"Mon-Fri 08:30-15:30\"]\n")
    text = replace_once(text, "    title: Sixth form\n",
                        "    title: Sixth form\n    blocked_during:\n      lessons: [social_networks]\n")
    path = str(write_config(text, LISTS))

    def at(when: str) -> dict:
        assert cli.main(["why", "--json", "--config", path, "--group", "sixth_form", "--at", when,
                         "https://www.facebook.com/"]) == 0
        return json.loads(capsys.readouterr().out)

    lesson, evening = at("2026-11-23T10:00"), at("2026-11-23T19:00")
    assert (lesson["action"], lesson["matches"][0]["blocked_for_group"]) == ("block", True)
    assert (evening["action"], evening["matches"][0]["blocked_for_group"]) == ("allow", False)

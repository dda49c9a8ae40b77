"""`schoolgate config check` (and `make check-config`, which runs it): everything the gateway would
refuse in a config is a problem with its file and line and exit status 2; what the gateway works
around (a bad list line) is a warning and status 0; nothing is downloaded."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from sample_school import BASE_CONFIG, REPO, replace_once
from schoolgate import cli
from schoolgate.config.loader import load_config

ILLEGAL = REPO / "categories" / "illegal"

ALLOW_STAFF = """\
    blocked_categories: []
    allow:
      - target: {target}
        reason: Teaching resource
"""


def check(capsys, path: Path) -> tuple[int, str, str]:
    status = cli.main(["config", "check", "--config", str(path)])
    out, err = capsys.readouterr()
    return status, out, err


def with_illegal_list(source: str, form: str = "plain") -> str:
    return replace_once(BASE_CONFIG, "categories:\n",
                        f"illegal_lists:\n  iwf: {{kind: iwf, source: {source!r}, form: {form}}}\n"
                        "categories:\n")


def test_a_good_config_has_no_problems(write_config, capsys):
    path = write_config()
    status, out, err = check(capsys, path)
    assert (status, err) == (0, "")
    assert out == (f"{path}: no problems; the gateway would start with it (5 groups, "
                   "3 categories, 0 illegal lists)\n")


def test_the_example_config_has_no_problems(capsys):
    status, out, err = check(capsys, REPO / "config" / "schoolgate.yaml")
    assert (status, err) == (0, ""), err
    assert "no problems" in out


def test_a_mistake_in_the_file_is_its_file_and_line(write_config, capsys):
    text = replace_once(BASE_CONFIG, "blocked_categories: [gambling]\n",
                        "blocked_categories: [gamblng]\n")
    path = write_config(text)
    status, out, err = check(capsys, path)
    assert status == 2 and out == ""
    assert err.startswith(f"schoolgate: {path}:")
    assert "unknown category 'gamblng'" in err and "did you mean 'gambling'?" in err


def test_an_allow_entry_for_an_illegal_list_page_is_refused(write_config, capsys):
    text = replace_once(with_illegal_list(str(ILLEGAL / "iwf-test.txt")),
                        "    blocked_categories: []\n",
                        ALLOW_STAFF.format(target="iwf-test-domain.example.net"))
    status, _, err = check(capsys, write_config(text))
    assert status == 2
    assert "groups.staff.allow[0]: refused" in err and "'iwf'" in err


def test_an_illegal_list_with_no_usable_entries_would_stop_start_up(write_config, tmp_path,
                                                                     capsys):
    source = tmp_path / "empty-iwf.txt"
    source.write_text("# nothing but a comment\n")
    status, _, err = check(capsys, write_config(with_illegal_list(str(source))))
    assert status == 2
    assert ("schoolgate: illegal list iwf: iwf: the source has no valid entries (and no last "
            "good copy to fall back on): the gateway would not start\n") in err
    # Said once: not also as the refresh's own log line.
    assert err.count("no valid entries") == 1


def test_an_illegal_list_url_is_never_fetched(write_config, capsys):
    # A port nothing listens on: a fetch would fail, and make it a problem.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    status, out, err = check(capsys, write_config(
        with_illegal_list(f"http://127.0.0.1:{port}/iwf.txt")))
    assert status == 0, err
    assert ("schoolgate: warning: illegal list iwf: no last good copy yet; the gateway downloads "
            "it at start-up and does not start if that fails\n") in err
    assert "1 illegal list, 1 warning above" in out


def test_a_bad_list_line_is_a_warning(write_config, capsys):
    lists = {"gambling": "bet365.com\nnot a domain!\n", "social_networks": "facebook.com\n",
             "education": "bbc.co.uk\n"}
    path = write_config(lists=lists)
    status, out, err = check(capsys, path)
    assert status == 0
    assert err.startswith("schoolgate: warning: ") and f"{path.parent / 'lists' / 'gambling'}:2" in err
    assert "1 warning above" in out


def test_a_broken_local_policy_file_is_a_problem(write_config, capsys):
    path = write_config()
    data = load_config(path).data_dir
    data.mkdir()
    (data / "local-policy.json").write_text("{not json")
    status, _, err = check(capsys, path)
    assert status == 2
    assert f"{data / 'local-policy.json'}: not a Schoolgate local policy file" in err


def test_a_broken_block_page_template_is_a_problem(write_config, tmp_path, capsys):
    folder = tmp_path / "school-templates"
    folder.mkdir()
    (folder / "blockpage.html").write_text("<p>{% if %}</p>\n")
    path = write_config(BASE_CONFIG + f"templates: {folder}\n")
    status, _, err = check(capsys, path)
    assert status == 2
    assert f"template blockpage.html: {folder / 'blockpage.html'}:1:" in err


def test_a_broken_email_template_is_a_problem(write_config, tmp_path, capsys):
    folder = tmp_path / "school-templates"
    (folder / "email").mkdir(parents=True)
    (folder / "email" / "alert.txt").write_text("{% if a.theme %}\n")
    routing = tmp_path / "routing.yaml"
    routing.write_text((REPO / "alerts" / "routing.yaml").read_text())
    path = write_config(BASE_CONFIG + f"templates: {folder}\nalerts: {{routing: {routing}}}\n")
    status, _, err = check(capsys, path)
    assert status == 2, err
    assert f"schoolgate: alerts: {folder / 'email' / 'alert.txt'}:" in err


def test_a_bad_identity_file_line_is_a_warning(write_config, tmp_path, capsys):
    ip_map = tmp_path / "ip-users.csv"
    ip_map.write_text("ip,user\n10.20.1.5,alice\nnot-an-ip,bob\n")
    text = replace_once(BASE_CONFIG, "default_group: guest\n",
                        f"default_group: guest\nidentity: {{ip_map: {ip_map}}}\n")
    status, _, err = check(capsys, write_config(text))
    assert status == 0
    assert f"{ip_map}:3" in err and err.startswith("schoolgate: warning: ")


@pytest.mark.parametrize("argv", [["config", "check", "--help"], ["config"]])
def test_config_commands_describe_themselves(capsys, argv):
    status = 0
    try:
        status = cli.main(argv)
    except SystemExit as e:
        status = e.code
    out, _ = capsys.readouterr()
    assert status == 0
    assert "check" in out


def test_why_still_works_on_a_config_that_passes(write_config, capsys):
    # The same rules: what `config check` builds is what `why` decides with.
    path = write_config()
    assert check(capsys, path)[0] == 0
    assert cli.main(["why", "--json", "--config", str(path), "https://bet365.com/"]) == 0
    assert json.loads(capsys.readouterr().out)["action"] == "block"

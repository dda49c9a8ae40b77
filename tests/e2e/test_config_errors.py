"""A broken config stops `schoolgate run` before anything starts: exit status 2 and one line that
names the file, the line and the key, never a traceback."""

from __future__ import annotations

import subprocess

import pytest

from .harness import TIMEOUT, clean_env, schoolgate_command

pytestmark = pytest.mark.e2e

GOOD = """\
school:
  name: Test School
data_dir: {tmp}/data
ca_dir: {tmp}/ca
listen:
  host: 127.0.0.1
  port: 8080
categories:
  gambling:
    title: Gambling
    lists: [{tmp}/gambling]
groups:
  pupils:
    title: Pupils
    subnets: [127.0.0.0/8]
    blocked_categories: [gambling]
  staff:
    subnets: [10.30.0.0/16]
    blocked_categories: []
default_group: pupils
"""

CASES = [
    # id, line number, its new text (None: append it), key, what the message says
    ("unknown-top-level-key", 21, "colour:\n  sky: blue", "colour", "unknown key"),
    ("misspelt-key", 16, "    blocked_categorys: [gambling]", "groups.pupils.blocked_categorys",
     "did you mean 'blocked_categories'?"),
    ("unknown-category", 16, "    blocked_categories: [gamblng]",
     "groups.pupils.blocked_categories[0]", "unknown category 'gamblng'"),
    ("wrong-type", 7, "  port: eighty", "listen.port", "must be a whole number"),
    ("subnet-in-two-groups", 18, "    subnets: [127.0.0.0/8]", "groups.staff.subnets[0]",
     "is already in groups.pupils.subnets[0] (line 15)"),
    ("missing-list-file", 11, "    lists: [{tmp}/no-such-list]", "categories.gambling.lists[0]",
     "does not exist"),
    ("unknown-default-group", 20, "default_group: teachers", "default_group", "names no group"),
]


def run(config) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*schoolgate_command(), "run", "--config", str(config),
         "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=TIMEOUT, env=clean_env(),
    )


def test_the_good_config_is_good(tmp_path):
    """The cases below break one line each of this config; on its own it passes validation."""
    from schoolgate.config.loader import load_config

    (tmp_path / "gambling").write_text("bet365.com\n", encoding="utf-8")
    config = tmp_path / "good.yaml"
    config.write_text(GOOD.format(tmp=tmp_path), encoding="utf-8")
    assert load_config(config).groups["pupils"].blocked_categories == {"gambling"}


@pytest.mark.parametrize(("line", "text", "key", "says"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_config_exits_2_naming_file_line_and_key(tmp_path, line, text, key, says):
    (tmp_path / "gambling").write_text("bet365.com\n", encoding="utf-8")
    lines = GOOD.format(tmp=tmp_path).splitlines()
    if line > len(lines):
        lines.append(text)
    else:
        lines[line - 1] = text.format(tmp=tmp_path)
    config = tmp_path / "bad.yaml"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")

    done = run(config)

    assert done.returncode == 2, done
    assert "Traceback" not in done.stdout + done.stderr
    assert done.stdout == ""  # nothing started, not even the banner
    (message,) = done.stderr.splitlines()
    assert message.startswith(f"schoolgate: {config}:{line}: {key}: "), message
    assert says in message


def test_missing_config_file_exits_2(tmp_path):
    missing = tmp_path / "nowhere.yaml"
    done = run(missing)
    assert done.returncode == 2
    assert "Traceback" not in done.stdout + done.stderr
    assert done.stderr.splitlines() == [f"schoolgate: {missing}: configuration file not found"]

"""The Makefile: every target it declares phony has a rule, every rule that makes no file is
declared phony, and `make check-config` checks a config as `make run` would read it: status 0
and a line saying so for a good one, 2 and the problem with its file and line for a bad one.
Runs the real `make` in the checkout, on configs in a tree of their own
(tests/e2e/example_tree.py)."""

from __future__ import annotations

import re
import subprocess

import pytest

from .example_tree import ROOT, example_tree
from .harness import clean_env, schoolgate_command

MAKEFILE = (ROOT / "Makefile").read_text(encoding="utf-8")


def _phony() -> list[str]:
    (line,) = re.findall(r"^\.PHONY:(.*)$", MAKEFILE, re.M)
    return line.split()


def make(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    # Generous: a first `make` after pyproject.toml changed reinstalls into .venv first.
    return subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), *args],
                          capture_output=True, text=True, timeout=timeout, env=clean_env())


@pytest.mark.parametrize("target", _phony())
def test_every_phony_target_has_a_rule(target):
    assert re.search(rf"^{re.escape(target)}:", MAKEFILE, re.M), (
        f"Makefile declares {target} phony but has no rule for it")
    done = make("-n", target)  # what it would run, without running it
    assert done.returncode == 0, done.stderr


def test_every_rule_that_makes_no_file_is_phony():
    # A rule named like a command (`run`, `lint`) makes no file: unless it is phony, a file of
    # that name in the checkout would make `make run` say "up to date" and do nothing.
    rules = re.findall(r"^([A-Za-z][\w-]*):", MAKEFILE, re.M)
    assert rules
    assert sorted(set(rules) - set(_phony())) == []


def test_check_config_passes_the_example_config(tmp_path):
    config = example_tree(tmp_path)
    done = make("check-config", f"CONFIG={config}")
    assert done.returncode == 0, done.stderr
    assert f"{config}: no problems; the gateway would start with it" in done.stdout
    assert "schoolgate:" not in done.stderr


def test_check_config_exits_2_naming_the_problem(tmp_path):
    config = example_tree(tmp_path)
    text = config.read_text(encoding="utf-8")
    assert text.count("    blocked_categories: [adult, gambling, malware]\n") == 1
    config.write_text(text.replace("    blocked_categories: [adult, gambling, malware]\n",
                                   "    blocked_categories: [adult, gamblng, malware]\n"))
    line = next(n for n, row in enumerate(config.read_text().splitlines(), 1) if "gamblng" in row)
    done = make("check-config", f"CONFIG={config}")
    assert done.returncode == 2
    assert (f"schoolgate: {config}:{line}: groups.staff.blocked_categories[1]: unknown category "
            "'gamblng'") in done.stderr
    assert "no problems" not in done.stdout


def test_check_config_tells_the_gateways_refusals_from_its_own(tmp_path):
    # The status is schoolgate's, not only make's: a missing file is 2 from the command itself.
    done = subprocess.run([*schoolgate_command(), "config", "check",
                           "--config", str(tmp_path / "missing.yaml")],
                          capture_output=True, text=True, timeout=60, env=clean_env())
    assert done.returncode == 2
    assert done.stderr == f"schoolgate: {tmp_path / 'missing.yaml'}: configuration file not found\n"

"""`schoolgate` as a Unix tool: piped into `head` (or anything that stops reading early) it ends
quietly, with no BrokenPipeError traceback, and with the status a shell reports for a tool whose
reader went away (141: 128 + SIGPIPE). Each command runs as a real process on the example config
in a tree of its own (tests/e2e/example_tree.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from schoolgate.config.loader import load_config
from schoolgate.store import open_for_writing
from schoolgate.store.audit import record_change

from .example_tree import example_tree
from .harness import TIMEOUT, clean_env, schoolgate_command

CLOSED = 128 + signal.SIGPIPE

#: Commands that write to standard output without a running gateway, and what each needs.
COMMANDS = [
    # argparse's own output: the help, the version, the command list.
    ["--help"],
    ["--version"],
    [],
    ["why", "--help"],
    ["lists"],
    # A command's table or report.
    ["why", "https://www.bet365.com/", "http://www.bbc.co.uk/news"],
    ["why", "--json", "https://www.bet365.com/"],
    ["lists", "show"],
    ["lists", "show", "--json"],
    ["audit"],
    ["requests", "list"],
    ["purge", "--dry-run"],
    ["config", "check"],
]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder to run in: `config/schoolgate.yaml`, the commands' default, is its own. Its
    store exists (as after a first start) and its audit log has a row, so `purge` and `audit`
    have something to say."""
    config = load_config(example_tree(tmp_path_factory.mktemp("example")))
    open_for_writing(config.database_path)
    record_change(config.database_path, actor="A Technician", action="block",
                  target="example.org", scope="all groups", reason="a test")
    return config.path.parents[1]


def _with_closed_stdout(tree: Path, argv: list[str]) -> subprocess.CompletedProcess:
    """Run `schoolgate ARGV` with standard output a pipe nobody reads any more: every write to it
    fails, as it does once `head` has its lines and exits."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([*schoolgate_command(), *argv], cwd=tree, stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=TIMEOUT,
                              env=clean_env())
    finally:
        os.close(write_end)


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: " ".join(a) or "(none)")
def test_a_closed_pipe_ends_the_command_quietly(tree, argv):
    done = _with_closed_stdout(tree, argv)
    assert done.stderr == "", done.stderr
    assert done.returncode == CLOSED


def test_head_reads_the_first_lines_of_a_long_output(tree, tmp_path):
    """`schoolgate why - | head -2` on thousands of URLs: the output is far larger than a pipe
    holds, so the command is still writing when the reader stops."""
    urls = tmp_path / "urls.txt"
    urls.write_text("".join(f"https://site{n}.example/page?q={n}\n" for n in range(5000)))
    with urls.open() as stdin:
        proc = subprocess.Popen([*schoolgate_command(), "why", "-"], cwd=tree, env=clean_env(),
                                stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        first = [proc.stdout.readline(), proc.stdout.readline()]
        proc.stdout.close()  # what `head -2` does once it has them
        status = proc.wait(TIMEOUT)
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    assert first[0] == "https://site0.example/page?q=0\n"
    assert err == "", err
    assert status == CLOSED


def test_a_reader_that_keeps_reading_gets_everything_and_status_0(tree):
    # The other side of the same code: a full read is untouched.
    done = subprocess.run([*schoolgate_command(), "why", "https://www.bet365.com/"], cwd=tree,
                          capture_output=True, text=True, timeout=TIMEOUT, env=clean_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("https://www.bet365.com/\n") and "BLOCK" in done.stdout


def test_the_gateway_keeps_filtering_when_nobody_reads_its_banner(tree):
    """`schoolgate run | head -3`: once `head` exits, the banner (standard output) has no
    reader. The gateway goes on filtering, says nothing alarming, and stops cleanly."""
    with socket.socket() as s:  # a free port, so the banner is not needed to find it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    read_end, write_end = os.pipe()
    os.close(read_end)
    proc = subprocess.Popen(
        [*schoolgate_command(), "run", "--listen", f"127.0.0.1:{port}", "--metrics",
         "127.0.0.1:0", "--workers", "1"],
        cwd=tree, env=clean_env(), stdout=write_end, stderr=subprocess.PIPE, text=True)
    os.close(write_end)
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(iter(proc.stderr.readline, "")),
                              daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + TIMEOUT
        while not any("accepting connections" in line for line in err):
            assert proc.poll() is None, "".join(err)
            assert time.monotonic() < deadline, "".join(err)
            time.sleep(0.1)
        time.sleep(1)  # the banner is printed once every worker accepts
        assert proc.poll() is None, "".join(err)
        proxy = urllib.request.ProxyHandler({"http": f"http://127.0.0.1:{port}"})
        with pytest.raises(urllib.error.HTTPError) as blocked:
            urllib.request.build_opener(proxy).open("http://www.bet365.com/", timeout=TIMEOUT)
        assert blocked.value.code == 403
        blocked.value.close()
        proc.send_signal(signal.SIGTERM)
        status = proc.wait(TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(5)
        if proc.stderr is not None:
            proc.stderr.close()
    text = "".join(err)
    assert status == 0, text
    assert "Traceback" not in text and "BrokenPipe" not in text, text
    assert "standard output is closed" in text  # said once, as a fact, not a fault

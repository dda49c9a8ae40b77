"""The README's commands work as written.

- Every `make` target and every `schoolgate` command (and command group's verb) that a document
  names, in a code block or in running text, exists: `make -n TARGET` accepts it, and the
  command is one of the parser's.
- Every code block marked runnable runs, in the order the README shows them, in a stand-in clone
  (tests/e2e/example_tree.py: the example config, its data folders, an empty data dir, `.venv`
  linked to this one) with the proxy and metrics ports set to 0 so nothing collides. `make`
  runs in the checkout with CONFIG= that config. The marker is an HTML comment on the line
  before the fence, invisible on GitHub:
      <!-- runnable -->
      <!-- runnable except "make test" (why it is not run) -->
  An excepted command must be in its block, so an exception cannot outlive its command.
  Commands exit with status 0 and no traceback. `make run` and `schoolgate run` start and
  stop: started, waited for until the banner says the gateway is filtering, sent SIGTERM (the
  gateway's supervisor, from its pid file, as a service manager does), and must exit with
  status 0 within 10 seconds.
- The example output marked `<!-- output of "make run" -->` has the real banner's lines.
- Every other `schoolgate` command line in a code block parses with the real parser, and every
  command named anywhere answers `--help` with status 0.
- Docker commands are the exception, said so in the README's Docker section: they need Docker and
  the internet (tests/test_docs.py checks the Dockerfile).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from schoolgate import cli

from .example_tree import ROOT, example_tree
from .harness import clean_env, wait_for

DOCUMENTS = sorted(p for p in ROOT.rglob("*.md")
                   if not {".venv", ".pytest_cache", "node_modules"} & set(p.parts)
                   and ROOT / "tests" not in p.parents)
README = ROOT / "README.md"

MARKER = re.compile(r'^<!-- runnable(?: except ((?:"[^"]+"[ ,]*)+)(?: \(.*\))?)? -->$')
OUTPUT_MARKER = re.compile(r'^<!-- output of "([^"]+)" -->$')
FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
SHELL = ("sh", "bash", "shell")
"""Code blocks of commands; a plain fence is output or a listing."""

#: How long `make run` may take to print its banner: a first `make` after pyproject.toml changed
#: reinstalls into .venv, and the machine is shared.
READY_SECONDS = 120.0
#: From SIGTERM to a clean exit (the issue's bound: a gateway that hangs on stop fails).
STOP_SECONDS = 10.0


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    lang: str
    text: str
    marker: str | None
    """The HTML comment on the line before the fence, if any."""

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def runnable(self) -> bool:
        return self.marker is not None and MARKER.match(self.marker) is not None

    @property
    def excepted(self) -> list[str]:
        m = MARKER.match(self.marker or "")
        return re.findall(r'"([^"]+)"', m[1]) if m and m[1] else []

    def commands(self) -> list[str]:
        """Its command lines, continuation lines joined, comments and blanks left out."""
        out, pending = [], ""
        for raw in self.text.splitlines():
            line = pending + raw.strip()
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            pending = ""
            if line and not line.startswith("#"):
                out.append(line)
        return out


def blocks(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, indent = i, len(m[1])
        i += 1
        body = []
        while i < len(lines) and not FENCE.match(lines[i]):
            body.append(lines[i][indent:])
            i += 1
        before = next((lines[j].strip() for j in range(start - 1, -1, -1) if lines[j].strip()),
                      "")
        found.append(Block(path, start + 1, m[2], "\n".join(body),
                           before if before.startswith("<!--") else None))
        i += 1
    return found


def prose(path: Path) -> str:
    """The document without its code blocks."""
    kept, inside = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            inside = not inside
        elif not inside:
            kept.append(line)
    return "\n".join(kept)


def inline_code(path: Path) -> list[str]:
    return [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", prose(path))]


def segments(line: str) -> list[list[str]]:
    """The simple commands of a shell line (`a | b && c`), each as argv."""
    out: list[list[str]] = [[]]
    for token in shlex.split(line, comments=True):
        if token in ("|", "&&", "||", ";"):
            out.append([])
        else:
            out[-1].append(token)
    return [argv for argv in out if argv]


# ---------------------------------------------------------------------------------------------
# What the documents name


def command_path(args: list[str]) -> tuple[list[str], str | None]:
    """The subcommands `schoolgate ARGS` names, and the first word that is neither a command
    nor a placeholder (COMMAND, <REF>) where a command must be, if any."""
    parser, path, i = cli.parser(), [], 0
    while i < len(args):
        token = args[i]
        if not path and token.startswith("-"):  # a global option: --config PATH, --version
            i += 2 if token == "--config" else 1
            continue
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or token.startswith("-"):
            break
        if token in subs[0].choices:
            path.append(token)
            parser = subs[0].choices[token]
            i += 1
            continue
        placeholder = token.isupper() or token.startswith(("<", "[", "("))
        return path, None if placeholder else token
    return path, None


def _is_schoolgate(argv: list[str]) -> bool:
    return Path(argv[0]).name == "schoolgate"


def named_commands() -> list[tuple[str, list[str]]]:
    """(where, the words after `schoolgate`) for every schoolgate command the documents name,
    in code blocks (not Docker's) and in running text."""
    out = []
    for path in DOCUMENTS:
        for block in blocks(path):
            if block.lang not in SHELL:
                continue
            for line in block.commands():
                with contextlib.suppress(ValueError):  # a block of output, not shell
                    for argv in segments(line):
                        if _is_schoolgate(argv):
                            out.append((block.id, argv[1:]))
        for span in inline_code(path):
            if span.startswith("schoolgate "):
                out.append((f"{path.relative_to(ROOT)}: `{span}`", span.split()[1:]))
    return out


def named_make_targets() -> list[tuple[str, str]]:
    out = []
    for path in DOCUMENTS:
        texts = [(b.id, line) for b in blocks(path) if b.lang in SHELL
                 for line in b.commands()]
        texts += [(f"{path.relative_to(ROOT)}: `{s}`", s) for s in inline_code(path)]
        for where, text in texts:
            for argv in segments(text) if "make " in text else []:
                if argv[0] == "make":
                    out += [(where, t) for t in argv[1:] if "=" not in t and not t.startswith("-")]
    return out


NAMED = named_commands()
TARGETS = named_make_targets()


def test_the_documents_name_commands_and_targets():
    # The collectors work: the README's own first block and a heading are found.
    assert ("README.md:4", "run") in [(w, t) for w, t in TARGETS]
    assert any(words[:2] == ["config", "check"] for _, words in NAMED)


@pytest.mark.parametrize("target", sorted({t for _, t in TARGETS}))
def test_every_make_target_named_exists(target):
    where = [w for w, t in TARGETS if t == target]
    done = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "-n", target],
                          capture_output=True, text=True, timeout=60, env=clean_env())
    assert done.returncode == 0, f"{where} name `make {target}`: {done.stderr}"


@pytest.mark.parametrize(("where", "words"), NAMED, ids=[w for w, _ in NAMED])
def test_every_schoolgate_command_named_exists(where, words):
    path, unknown = command_path(words)
    assert unknown is None, f"{where}: `schoolgate {' '.join(words)}`: no command {unknown!r}"


def _help(path: list[str], capsys) -> tuple[int | str | None, str]:
    try:
        status: int | str | None = cli.main([*path, "--help"])
    except SystemExit as e:
        status = e.code
    return status, capsys.readouterr().out


@pytest.mark.parametrize("path", sorted({tuple(command_path(w)[0]) for _, w in NAMED} - {()}),
                         ids=" ".join)
def test_every_named_command_answers_help(path, capsys):
    status, out = _help(list(path), capsys)
    assert status == 0
    assert out.startswith(f"usage: schoolgate {' '.join(path)}")


def _not_run() -> list[tuple[str, list[str]]]:
    """The schoolgate command lines of code blocks the test does not run: in no runnable block,
    or excepted from one."""
    out = []
    for block in blocks(README):
        if block.lang != "sh":
            continue
        for line in block.commands():
            for argv in segments(line):
                if not _is_schoolgate(argv):
                    continue
                words = "schoolgate " + " ".join(argv[1:])
                if not block.runnable or any(words.startswith(e) for e in block.excepted):
                    out.append((block.id, argv[1:]))
    return out


@pytest.mark.parametrize(("where", "args"), _not_run(), ids=[w for w, _ in _not_run()])
def test_every_command_line_not_run_parses(where, args):
    try:
        parsed = cli.parser().parse_args(args)
    except SystemExit as e:
        pytest.fail(f"{where}: `schoolgate {shlex.join(args)}` does not parse (status {e.code})")
    assert getattr(parsed, "func", None) is not None


def test_docker_blocks_are_not_marked_runnable_and_the_readme_says_why():
    docker = [b for b in blocks(README) if any(line.startswith("docker ")
                                               for line in b.commands())]
    assert docker and not [b.id for b in docker if b.runnable]
    docker_section = README.read_text(encoding="utf-8").split("## Docker", 1)[1]
    assert "test does not run these" in docker_section


def test_every_exception_is_in_its_block():
    for block in blocks(README):
        for excepted in block.excepted:
            named = ["schoolgate " + " ".join(argv[1:]) if _is_schoolgate(argv) else " ".join(argv)
                     for line in block.commands() for argv in segments(line)]
            assert any(n.startswith(excepted) for n in named), (
                f"{block.id} excepts {excepted!r}, which it does not contain")


# ---------------------------------------------------------------------------------------------
# The runnable blocks, run


RUNNABLE = [b for b in blocks(README) if b.runnable]


def test_the_readme_marks_what_runs_make_run_first():
    assert RUNNABLE, "no code block in README.md is marked <!-- runnable -->"
    assert RUNNABLE[0].line == blocks(README)[0].line, "the opening commands are not marked"
    assert "make run" in RUNNABLE[0].commands()[0]
    marked = [b.marker for b in blocks(README) if b.marker and "runnable" in b.marker]
    assert len(marked) == len(RUNNABLE), f"a marker that does not parse: {marked}"


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = example_tree(tmp_path_factory.mktemp("clone"))
    text = config.read_text(encoding="utf-8")
    # Ports the OS picks: other gateways (other tests, other checkouts) may hold 8080 and 9464.
    for old, new in (("  port: 8080\n", "  port: 0\n"), ("  port: 9464\n", "  port: 0\n")):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    config.write_text(text, encoding="utf-8")
    root = config.parents[1]
    (root / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    return root


@dataclass
class Started:
    proc: subprocess.Popen
    lines: list[tuple[str, str]]
    lock: threading.Condition

    def output(self, stream: str | None = None) -> list[str]:
        with self.lock:
            return [line for s, line in self.lines if stream in (None, s)]


@contextlib.contextmanager
def started(argv: list[str], cwd: Path) -> Iterator[Started]:
    """A process with its output collected; killed with everything it started if the test
    fails first."""
    proc = subprocess.Popen(argv, cwd=cwd, env=clean_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    run = Started(proc, [], threading.Condition())

    def read(stream, label: str) -> None:
        for line in stream:
            with run.lock:
                run.lines.append((label, line.rstrip("\n")))

    readers = [threading.Thread(target=read, args=(s, n), daemon=True)
               for s, n in ((proc.stdout, "stdout"), (proc.stderr, "stderr"))]
    for t in readers:
        t.start()
    try:
        yield run
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        for t in readers:
            t.join(5)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def _command(argv: list[str], tree: Path) -> tuple[list[str], Path]:
    """What to run for a README command line, and where."""
    if argv[0] == "make":
        return ["make", "--no-print-directory", "-C", str(ROOT), *argv[1:],
                f"CONFIG={tree / 'config' / 'schoolgate.yaml'}"], ROOT
    return ["bash", "-o", "pipefail", "-c", shlex.join(argv)], tree


def _starts_and_stops(argv: list[str]) -> bool:
    return (argv[:2] == ["make", "run"]
            or (_is_schoolgate(argv) and command_path(argv[1:])[0] == ["run"]))


def _run_until_sigterm(line: str, argv: list[str], tree: Path) -> list[str]:
    command, cwd = _command(argv, tree)
    pidfile = tree / "data" / "schoolgate.pid"
    with started(command, cwd) as run:
        def ready() -> bool:
            if run.proc.poll() is not None:
                raise AssertionError(f"`{line}` exited with status {run.proc.returncode} before "
                                     "it was filtering:\n" + "\n".join(run.output()))
            banner = run.output("stdout")
            return (any("is filtering." in x for x in banner)
                    and sum(x.strip().startswith("curl ") for x in banner) >= 2
                    and pidfile.exists())

        wait_for(ready, f"`{line}` to start filtering", timeout=READY_SECONDS,
                 on_timeout=lambda: "\n".join(run.output()))
        gateway = int(pidfile.read_text().strip())
        os.kill(gateway, signal.SIGTERM)
        try:
            status = run.proc.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"`{line}` still running {STOP_SECONDS:.0f}s after SIGTERM:\n"
                                 + "\n".join(run.output())) from None
        assert status == 0, f"`{line}` exited with status {status}:\n" + "\n".join(run.output())
        deadline = time.monotonic() + STOP_SECONDS
        while time.monotonic() < deadline and _alive(gateway):
            time.sleep(0.05)
        assert not _alive(gateway), f"`{line}`: the gateway (pid {gateway}) outlived it"
        assert not [x for x in run.output("stderr") if "Traceback" in x], "\n".join(run.output())
        return run.output("stdout")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _excepted(block: Block, argvs: list[list[str]]) -> bool:
    words = ["schoolgate " + " ".join(a[1:]) if _is_schoolgate(a) else " ".join(a) for a in argvs]
    return any(w.startswith(e) for w in words for e in block.excepted)


@pytest.mark.parametrize("block", RUNNABLE, ids=[b.id for b in RUNNABLE])
def test_every_runnable_block_runs(block, tree):
    ran = 0
    for line in block.commands():
        argvs = segments(line)
        if _excepted(block, argvs):
            continue
        if len(argvs) == 1 and _starts_and_stops(argvs[0]):
            banner = _run_until_sigterm(line, argvs[0], tree)
            _check_example_output(" ".join(argvs[0]), banner)
        else:
            command, cwd = (_command(argvs[0], tree) if len(argvs) == 1 and argvs[0][0] == "make"
                            else (["bash", "-o", "pipefail", "-c", line], tree))
            done = subprocess.run(command, cwd=cwd, capture_output=True, text=True,
                                  timeout=120, env=clean_env())
            assert done.returncode == 0, (f"{block.id}: `{line}` exited with status "
                                          f"{done.returncode}\n{done.stdout}{done.stderr}")
            assert "Traceback" not in done.stderr, done.stderr
        ran += 1
    assert ran, f"{block.id} is marked runnable but nothing in it was run"


def _shape(line: str) -> str:
    """What a banner line is, without its values: the text before its first two-space gap (a
    label), or, for a line without one, its first two words."""
    stripped = line.strip()
    if _labelled(stripped):
        return re.split(r" {2,}", stripped, maxsplit=1)[0]
    return " ".join(stripped.split()[:2])


def _labelled(line: str) -> bool:
    return re.search(r"\S {2,}\S", line.strip()) is not None


def _check_example_output(command: str, printed: list[str]) -> None:
    """The README's example of what `command` prints has the real output's lines: every line
    it shows is printed, and it shows every labelled line (`  metrics   http://...`)."""
    for block in blocks(README):
        m = OUTPUT_MARKER.match(block.marker or "")
        if not m or m[1] != command:
            continue
        real = [x for x in printed if x.strip()]
        shown = [x for x in block.text.splitlines() if x.strip()]
        missing = [_shape(x) for x in shown if _shape(x) not in {_shape(r) for r in real}]
        assert not missing, f"{block.id}: the README shows lines `{command}` does not print: {missing}"
        labels = [_shape(x) for x in real if _labelled(x)]
        shown_labels = [_shape(x) for x in shown if _labelled(x)]
        assert shown_labels == labels, (f"{block.id}: `{command}` prints {labels}, the README "
                                        f"shows {shown_labels}")


def test_the_example_output_names_a_command_the_readme_runs():
    outputs = [OUTPUT_MARKER.match(b.marker or "") for b in blocks(README)]
    commands = {m[1] for m in outputs if m}
    assert commands, "the README's example output of `make run` is no longer marked"
    run = {" ".join(a) for b in RUNNABLE for line in b.commands() for a in segments(line)}
    assert commands <= run, f"example output of commands no runnable block runs: {commands - run}"

"""`schoolgate lists import ut1` and `schoolgate lists show`.

Imports read the real UT1 lists in place (../shared/data/ut1, a few categories to stay quick) as a
folder and as a tarball built here and served over HTTP from 127.0.0.1; the counts must be exactly
what the list index's readers count for the same files. Unsafe archives are refused with a message
naming the member, and nothing is written. Small hand-made trees cover bad lines, re-imports and
the snippet that puts imported categories into the config.
"""

from __future__ import annotations

import base64
import filecmp
import io
import json
import os
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from sample_school import BASE_CONFIG, REPO, replace_once
from schoolgate import cli
from schoolgate.classify.formats import ListFormat
from schoolgate.classify.index import ListIndex, ut1_sources
from schoolgate.config.loader import load_config
from schoolgate.sources import ut1 as listsimport
from schoolgate.sources.illegal import IllegalListSource
from schoolgate.sources.keywords import load_library
from schoolgate.sources.lists import build_classifier, cache_path, category_sources
from schoolgate.store.audit import read_audit

UT1 = REPO.parent / "shared" / "data" / "ut1"
CHOSEN = ["gambling", "games", "vpn"]
KINDS = {ListFormat.DOMAINS: "domains", ListFormat.URLS: "urls",
         ListFormat.EXPRESSIONS: "expressions"}


@pytest.fixture(scope="module")
def ut1() -> Path:
    if not UT1.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"the UT1 lists must be present in CI, expected at {UT1}")
        pytest.skip(f"UT1 lists not found at {UT1} (shared/data is not next to this checkout)")
    return UT1


@pytest.fixture(autouse=True)
def no_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Downloads go straight to the test server, whatever proxy the machine has."""
    for key in list(os.environ):
        if "proxy" in key.lower():
            monkeypatch.delenv(key)


@pytest.fixture
def config_path(write_config) -> Path:
    return write_config()


@pytest.fixture
def dest(config_path: Path) -> Path:
    """Where imports go by default: <data_dir>/lists/ut1."""
    return load_config(config_path).data_dir / "lists" / "ut1"


def run(capsys, config_path: Path, *args: str) -> tuple[int, str, str]:
    status = cli.main([*args, "--config", str(config_path)])
    out, err = capsys.readouterr()
    return status, out, err


def index_counts(root: Path, names: list[str]) -> dict[str, dict[str, int]]:
    """What the list index counts for these categories of a UT1 tree, by category and kind."""
    sources = ut1_sources(root, categories=names)
    index = ListIndex.build(sources)
    out = {n: {"domains": 0, "urls": 0, "expressions": 0, "bad_lines": 0} for n in names}
    for source, summary in zip(sources, index.summaries, strict=True):
        if (kind := KINDS.get(source.format)) is not None:
            out[source.category][kind] += summary.entries
        out[source.category]["bad_lines"] += len(summary.problems)
    return out


def audit_rows(config_path: Path, action: str = "lists-import"):
    return [r for r in read_audit(load_config(config_path).database_path) if r.action == action]


def table_row(out: str, name: str) -> list[str]:
    (line,) = [line for line in out.splitlines() if line.split()[:1] == [name]]
    return line.split()[1:]


def assert_same_files(source: Path, copy: Path) -> None:
    names = sorted(p.name for p in source.iterdir() if p.is_file())
    assert sorted(p.name for p in copy.iterdir()) == names
    match, mismatch, errors = filecmp.cmpfiles(source, copy, names, shallow=False)
    assert (mismatch, errors) == ([], [])


def write_tree(root: Path, categories: dict[str, dict[str, str]]) -> Path:
    """A small UT1-layout tree: {category: {file name: text}}."""
    for name, files in categories.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for file, text in files.items():
            (root / name / file).write_text(text, encoding="utf-8")
    return root


def make_tarball(path: Path, root: Path, names: list[str],
                 extra: list[tuple[tarfile.TarInfo, bytes | None]] = ()) -> Path:
    """`root`'s categories under `blacklists/`, as UT1 publishes them, plus `extra` members."""
    with tarfile.open(path, "w:gz") as tar:
        for name in names:
            tar.add(root / name, arcname=f"blacklists/{name}")
        if (root / "global_usage").is_file():
            tar.add(root / "global_usage", arcname="blacklists/global_usage")
        for info, data in extra:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


class FileServer:
    """Serves fixed files (and redirects) from 127.0.0.1, optionally behind a Basic login."""

    def __init__(self, files: dict[str, bytes], redirects: dict[str, str] | None = None,
                 login: str | None = None):
        self.files, self.redirects, self.login = files, redirects or {}, login
        self.requests: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                server.requests.append({"path": self.path,
                                        "authorization": self.headers.get("Authorization")})
                expected = server.login and "Basic " + base64.b64encode(
                    server.login.encode()).decode()
                if server.login and self.headers.get("Authorization") != expected:
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif self.path in server.redirects:
                    self.send_response(302)
                    self.send_header("Location", server.redirects[self.path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif self.path in server.files:
                    body = server.files[self.path]
                    self.send_response(200)
                    self.send_header("Content-Type", "application/gzip")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                else:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@pytest.fixture
def serve() -> Iterator:
    servers: list[FileServer] = []

    def start(*args, **kwargs) -> FileServer:
        servers.append(FileServer(*args, **kwargs))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


# -- importing real UT1 lists ------------------------------------------------------------------


def test_import_from_the_ut1_folder_counts_what_the_index_counts(ut1, config_path, dest, capsys):
    status, out, err = run(capsys, config_path, "lists", "import", "ut1", str(ut1),
                           "--categories", ",".join(CHOSEN), "--by", "T Tech",
                           "--reason", "new school year")
    assert status == 0, err
    expected = index_counts(ut1, CHOSEN)
    for name in CHOSEN:
        assert_same_files(ut1 / name, dest / name)
        e = expected[name]
        assert table_row(out, name) == [f"{e['domains']:,}", f"{e['urls']:,}",
                                        f"{e['expressions']:,}", f"{e['bad_lines']:,}"]
    total = sum(e["domains"] + e["urls"] + e["expressions"] for e in expected.values())
    assert f"imported {total:,} entries in 3 categories into {dest} in " in out
    # The real lists are read in place, never changed.
    assert not any(p.name.startswith(".ut1") for p in ut1.iterdir())

    (row,) = audit_rows(config_path)
    assert (row.actor, row.outcome, row.reason, row.target) == (
        "T Tech", "done", "new school year", str(ut1))
    assert row.detail["categories"] == expected
    assert row.detail["entries"] == total
    assert row.detail["destination"] == str(dest)
    # `schoolgate audit` shows the counts under the row.
    status, out, _ = run(capsys, config_path, "audit")
    assert status == 0
    assert f"imported games: {expected['games']['domains']:,} domains, " in out


def test_import_of_a_tarball_over_http_counts_the_same(ut1, config_path, dest, capsys, serve,
                                                       tmp_path):
    # UT1's own layout: blacklists/<category>/..., global_usage, and an alias link.
    alias = member("blacklists/betting", tarfile.SYMTYPE, "gambling")
    tarball = make_tarball(tmp_path / "blacklists.tar.gz", ut1, CHOSEN, [(alias, None)])
    server = serve({"/blacklists.tar.gz": tarball.read_bytes()}, login="technician:s3cret")
    url = server.base.replace("http://", "http://technician:s3cret@") + "/blacklists.tar.gz"

    status, out, err = run(capsys, config_path, "lists", "import", "ut1", url, "--by", "T Tech")
    assert status == 0, err
    assert f"downloading {server.base}/blacklists.tar.gz" in out
    expected = index_counts(ut1, CHOSEN)
    assert index_counts(dest, CHOSEN) == expected
    for name in CHOSEN:
        assert_same_files(ut1 / name, dest / name)
    assert not (dest / "betting").exists()  # the alias is not a second copy
    assert "1 alias skipped (symbolic links to other categories)" in out
    # Titles for the snippet come from UT1's global_usage.
    assert "title: Gambling/Casino games" not in out  # gambling is configured already
    (row,) = audit_rows(config_path)
    assert row.detail["categories"] == expected
    # The password reached the server, never the audit log or the screen.
    assert server.requests[-1]["authorization"].startswith("Basic ")
    assert row.target == f"{server.base}/blacklists.tar.gz"
    assert "s3cret" not in json.dumps(row.detail) + out + err


def test_import_of_a_local_tarball_with_the_folder_form_of_the_source(tmp_path, config_path,
                                                                      dest, capsys):
    tree = write_tree(tmp_path / "src", {"gambling": {"domains": "bet.example\n", "usage": "black\n"},
                                         "chat": {"domains": "chat.example\n",
                                                  "urls": "chat.example/room/\n"}})
    tarball = make_tarball(tmp_path / "bl.tgz", tree, ["gambling", "chat"])
    dest.mkdir(parents=True)  # an empty folder made ready for it is fine
    status, out, err = run(capsys, config_path, "lists", "import", "ut1", str(tarball),
                           "--by", "T Tech")
    assert status == 0, err
    assert dest.is_symlink()
    assert index_counts(dest, ["chat", "gambling"]) == index_counts(tree, ["chat", "gambling"])
    assert table_row(out, "chat") == ["1", "1", "0", "0"]

    # The folder holding blacklists/ (an unpacked tarball) works too, and so does one category.
    unpacked = tmp_path / "unpacked"
    with tarfile.open(tarball) as tar:
        tar.extractall(unpacked, filter="data")
    status, out, err = run(capsys, config_path, "lists", "import", "ut1", str(unpacked),
                           "--by", "T Tech")
    assert status == 0, err
    assert "imported 3 entries in 2 categories" in out
    status, out, err = run(capsys, config_path, "lists", "import", "ut1", str(tree / "chat"),
                           "--by", "T Tech")
    assert status == 0, err
    assert "imported 2 entries in 1 category" in out


# -- unsafe and unusable sources ---------------------------------------------------------------


def _outside(tmp_path: Path) -> Path:
    return tmp_path / "outside"


MALICIOUS = [
    # (member, why the archive is refused)
    (lambda t: (member("blacklists/../../outside/domains"), b"evil.example\n"), "'..'"),
    (lambda t: (member(f"{_outside(t)}/domains"), b"evil.example\n"), "absolute path"),
    (lambda t: (member("blacklists/gambling/urls", tarfile.SYMTYPE, str(_outside(t))), None),
     "symbolic link to"),
    (lambda t: (member("blacklists/chat", tarfile.SYMTYPE, "../../outside"), None),
     "symbolic link to '../../outside', outside the archive"),
    (lambda t: (member("blacklists/chat/domains", tarfile.LNKTYPE, "../outside"), None),
     "hard link to '../outside', outside the archive"),
    (lambda t: (member("blacklists/gambling/expressions", tarfile.CHRTYPE), None),
     "is a device file"),
    (lambda t: (member("blacklists/gambling/urls", tarfile.FIFOTYPE), None), "is a device file"),
]


@pytest.mark.parametrize("bad, reason", MALICIOUS)
def test_an_unsafe_archive_is_refused_and_nothing_is_written(bad, reason, tmp_path, config_path,
                                                             dest, capsys):
    tree = write_tree(tmp_path / "src", {"gambling": {"domains": "bet.example\n"}})
    info, data = bad(tmp_path)
    tarball = make_tarball(tmp_path / "evil.tar.gz", tree, ["gambling"], [(info, data)])
    with tarfile.open(tarball) as tar:  # the archive really holds the member as written
        assert info.name in tar.getnames()
    dest.parent.mkdir(parents=True)

    status, out, err = run(capsys, config_path, "lists", "import", "ut1", str(tarball),
                           "--by", "T Tech")
    assert status == 2
    assert f"schoolgate: refused: {tarball}: member {info.name!r}" in err
    assert reason in err
    assert "nothing was written" in err
    assert list(dest.parent.iterdir()) == []  # no lists, no staging folder left behind
    assert not _outside(tmp_path).exists()
    (row,) = audit_rows(config_path)
    assert (row.outcome, row.actor, row.target) == ("refused", "T Tech", str(tarball))
    assert reason in row.detail["refused"]


def test_a_file_that_is_not_an_archive_or_holds_no_ut1_lists_is_refused(tmp_path, config_path,
                                                                        dest, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("not an archive\n", encoding="utf-8")
    status, _, err = run(capsys, config_path, "lists", "import", "ut1", str(text), "--by", "T")
    assert status == 2
    assert "is not a tar archive" in err
    other = tmp_path / "other.tar.gz"
    with tarfile.open(other, "w:gz") as tar:
        tar.addfile(member("photos/cat.jpg"), io.BytesIO(b""))
    status, _, err = run(capsys, config_path, "lists", "import", "ut1", str(other), "--by", "T")
    assert status == 2
    assert "holds no UT1 category folders" in err
    assert not dest.exists()
    assert [r.outcome for r in audit_rows(config_path)] == ["refused", "refused"]


def test_an_unknown_category_is_a_usage_error(ut1, config_path, dest, capsys):
    status, _, err = run(capsys, config_path, "lists", "import", "ut1", str(ut1),
                         "--categories", "gamblng", "--by", "T")
    assert status == 2
    assert "has no category 'gamblng'; did you mean 'gambling'?" in err
    assert not dest.exists()
    assert audit_rows(config_path) == []  # a typo is not a policy change


def test_a_destination_not_made_by_import_is_never_replaced(tmp_path, config_path, capsys):
    tree = write_tree(tmp_path / "src", {"gambling": {"domains": "bet.example\n"}})
    mine = tmp_path / "documents"
    mine.mkdir()
    (mine / "budget.xlsx").write_text("precious", encoding="utf-8")
    status, _, err = run(capsys, config_path, "lists", "import", "ut1", str(tree),
                         "--dest", str(mine), "--by", "T")
    assert status == 2
    assert f"--dest {mine} already exists and was not made by `schoolgate lists import`" in err
    assert [p.name for p in mine.iterdir()] == ["budget.xlsx"]
    assert audit_rows(config_path) == []  # a usage error, not a refused change
    # Nor a link to somewhere else.
    link = tmp_path / "link"
    link.symlink_to(mine)
    status, _, err = run(capsys, config_path, "lists", "import", "ut1", str(tree),
                         "--dest", str(link), "--by", "T")
    assert status == 2
    assert "which `schoolgate lists import` did not make" in err
    assert link.resolve() == mine


def test_an_archive_with_too_many_files_is_refused(tmp_path, config_path, dest, capsys,
                                                   monkeypatch):
    monkeypatch.setattr(listsimport, "MAX_MEMBERS", 3)
    tree = write_tree(tmp_path / "src", {"a": {"domains": "a.example\n"},
                                         "b": {"domains": "b.example\n"}})
    tarball = make_tarball(tmp_path / "many.tar.gz", tree, ["a", "b"])
    status, _, err = run(capsys, config_path, "lists", "import", "ut1", str(tarball), "--by", "T")
    assert status == 2
    assert "has more than 3 files" in err
    assert not dest.exists()


def test_only_http_and_https_are_fetched(config_path, dest, capsys, serve):
    status, _, err = run(capsys, config_path, "lists", "import", "ut1",
                         "ftp://127.0.0.1/blacklists.tar.gz", "--by", "T")
    assert status == 2
    assert "only http and https addresses are fetched, not ftp:" in err
    server = serve({}, redirects={"/blacklists.tar.gz": "file:///etc/passwd"})
    status, _, err = run(capsys, config_path, "lists", "import", "ut1",
                         f"{server.base}/blacklists.tar.gz", "--by", "T")
    assert status == 2
    assert "redirects to a file: address; only http and https are followed" in err
    assert not dest.exists()


def test_a_download_over_the_size_limit_is_refused(config_path, dest, capsys, serve,
                                                   monkeypatch):
    monkeypatch.setattr(listsimport, "MAX_DOWNLOAD_BYTES", 1000)
    server = serve({"/big.tar.gz": b"\0" * 5000})
    status, _, err = run(capsys, config_path, "lists", "import", "ut1",
                         f"{server.base}/big.tar.gz", "--by", "T")
    assert status == 2
    assert f"{server.base}/big.tar.gz is larger than the 1,000 bytes allowed" in err
    assert not dest.exists()


def test_a_server_error_is_a_failure_not_a_refusal(config_path, dest, capsys, serve):
    server = serve({})
    status, _, err = run(capsys, config_path, "lists", "import", "ut1",
                         f"{server.base}/missing.tar.gz", "--by", "T")
    assert status == 1
    assert "the server answered 404" in err
    assert audit_rows(config_path) == []
    assert not dest.exists()


# -- what an import does to the lists in use ---------------------------------------------------


def test_bad_lines_are_counted_and_named_by_their_final_file_and_line(tmp_path, config_path,
                                                                      dest, capsys):
    tree = write_tree(tmp_path / "src", {"gambling": {
        "domains": "bet.example\nnot a domain\nhttp://x.example/y\npoker.example\n",
        "urls": "bet.example/casino/\nhas space.example/x\n",
        "expressions": "casino\n(?<=x)y\n",
    }})
    status, out, err = run(capsys, config_path, "lists", "import", "ut1", str(tree), "--by", "T")
    assert status == 0, err
    assert table_row(out, "gambling") == ["2", "1", "1", "4"]
    assert index_counts(dest, ["gambling"])["gambling"]["bad_lines"] == 4
    assert f"  {dest / 'gambling' / 'domains'}:2: 'not a domain' has spaces" in out
    assert f"  {dest / 'gambling' / 'domains'}:3: 'http://x.example/y' looks like a URL" in out
    assert f"  {dest / 'gambling' / 'urls'}:2: 'has space.example/x' has spaces" in out
    # The first three are shown; all four are counted.
    assert "expressions:2" not in out
    assert "  ... and 1 more bad line in gambling" in out


def test_a_reimport_swaps_whole_and_keeps_the_other_categories(tmp_path, config_path, dest,
                                                              capsys):
    tree = write_tree(tmp_path / "src", {"gambling": {"domains": "bet.example\n"},
                                         "games": {"domains": "play.example\n"}})
    assert run(capsys, config_path, "lists", "import", "ut1", str(tree), "--by", "A")[0] == 0
    first = os.readlink(dest)
    (tree / "gambling" / "domains").write_text("bet.example\nnew-casino.example\n")
    status, out, err = run(capsys, config_path, "lists", "import", "ut1", str(tree),
                           "--categories", "gambling", "--by", "B")
    assert status == 0, err
    assert dest.is_symlink() and os.readlink(dest) != first
    assert (dest / "gambling" / "domains").read_text() == "bet.example\nnew-casino.example\n"
    assert (dest / "games" / "domains").read_text() == "play.example\n"  # carried over
    # Only the link and the folder it points to: the previous folder is gone.
    assert sorted(p.name for p in dest.parent.iterdir()) == sorted(["ut1", os.readlink(dest)])
    manifest = json.loads((dest / listsimport.MANIFEST).read_text())["categories"]
    assert (manifest["gambling"]["by"], manifest["games"]["by"]) == ("B", "A")
    assert manifest["gambling"]["domains"] == 2


def test_the_printed_snippet_puts_the_import_into_the_config(tmp_path, config_path, dest, capsys):
    tree = write_tree(tmp_path / "src", {"chat": {"domains": "chat.example\n"},
                                         "gambling": {"domains": "casino.example\n"}})
    status, out, err = run(capsys, config_path, "lists", "import", "ut1", str(tree), "--by", "T")
    assert status == 0, err
    # chat is new: the YAML to add; gambling is configured with other lists: where to add it.
    assert f"categories.gambling in {config_path} reads other lists; to filter with the import, " \
           f"put {dest / 'gambling'} in its lists:" in out
    snippet = out[out.index("categories:\n"):].split("\n\n")[0]
    added = yaml.safe_load(snippet)["categories"]
    assert added == {"chat": {"title": "Chat", "lists": [str(dest / "chat")]}}
    assert "no configured category uses these folders yet" in out

    text = replace_once(BASE_CONFIG, "categories:\n",
                        "categories:\n  chat:\n    title: Chat\n"
                        f"    lists: [{dest / 'chat'}]\n")
    text = replace_once(text, "    title: Gambling\n    lists: [lists/gambling]\n",
                        f"    title: Gambling\n    lists: [lists/gambling, {dest / 'gambling'}]\n")
    config_path.write_text(text, encoding="utf-8")
    config = load_config(config_path)
    c = build_classifier(config)
    assert c.classify("http://www.chat.example/").categories == ("chat",)
    assert c.classify("http://casino.example/").categories == ("gambling",)

    # Now the config reads them, a re-import tells the running gateway (none runs here).
    status, out, err = run(capsys, config_path, "lists", "import", "ut1", str(tree), "--by", "T")
    assert status == 0, err
    assert "in use by the config: chat, gambling" in out
    assert "no running gateway found: the change applies when it starts" in out
    assert "To filter with" not in out


# -- lists show ----------------------------------------------------------------------------------

SECRET = "secret-illegal.example.org"


@pytest.fixture
def shown_config(tmp_path: Path, config_path: Path, dest: Path, capsys) -> Path:
    """The sample school with gambling from an import (plus its own list), an illegal list with
    a last good copy, a do-not-decrypt list with a bad line and the repository's keyword library."""
    tree = write_tree(tmp_path / "src", {"gambling": {
        "domains": "casino.example\npoker.example\nbad domain\n", "urls": "bet.example/live/\n",
        "usage": "black\n"}})
    assert run(capsys, config_path, "lists", "import", "ut1", str(tree), "--by", "T Tech")[0] == 0
    (tmp_path / "iwf.txt").write_text(f"{SECRET}/page.html\n{SECRET}/other\n", encoding="utf-8")
    (tmp_path / "lists" / "banks").write_text("bank.example\nnot a bank\n", encoding="utf-8")
    text = replace_once(BASE_CONFIG, "    lists: [lists/gambling]\n",
                        f"    lists: [{dest / 'gambling'}, lists/gambling]\n")
    text += ("illegal_lists:\n  iwf:\n    title: IWF URL list\n    kind: iwf\n"
             "    source: iwf.txt\n  ctiru:\n    kind: ctiru\n    source: iwf.txt\n"
             "tls:\n  do_not_decrypt: [lists/banks]\n  do_not_decrypt_hosts: [intranet.example]\n"
             f"keywords:\n  library: {REPO / 'keywords'}\n")
    config_path.write_text(text, encoding="utf-8")
    config = load_config(config_path)
    # The gateway's last good copy of iwf (digests only); ctiru was never loaded.
    assert IllegalListSource(config.illegal_lists["iwf"], config.data_dir / "illegal").refresh()
    return config_path


def test_lists_show_json(shown_config, dest, capsys):
    config = load_config(shown_config)
    status, out, err = run(capsys, shown_config, "lists", "show", "--json")
    assert status == 0, err
    report = json.loads(out)
    assert SECRET not in out

    gambling = next(c for c in report["categories"] if c["name"] == "gambling")
    assert (gambling["title"], gambling["domains"], gambling["urls"], gambling["expressions"],
            gambling["bad_lines"]) == ("Gambling", 2 + 2, 1, 0, 1)
    folder, plain = gambling["lists"]
    assert (folder["path"], folder["folder"]) == (str(dest / "gambling"), True)
    assert folder["imported"]["by"] == "T Tech"
    files = {Path(f["path"]).name: f for f in folder["files"]}
    assert set(files) == {"domains", "urls", "usage"}
    assert (files["domains"]["domains"], files["domains"]["bad_lines"]) == (2, 1)
    assert files["domains"]["problems"] == [
        f"{dest / 'gambling' / 'domains'}:3: 'bad domain' has spaces; write one domain per line; "
        "line skipped"]
    assert files["urls"]["urls"] == 1 and files["usage"]["format"] == "usage"
    assert plain["folder"] is False and plain["files"][0]["domains"] == 2
    assert all(f["age_seconds"] >= 0 for f in folder["files"])
    assert [c["name"] for c in report["categories"]] == list(config.categories)

    assert report["cache"] == {"path": str(cache_path(config)), "current": False,
                               "note": "not built yet"}
    iwf, ctiru = report["illegal_lists"]
    assert (iwf["name"], iwf["title"], iwf["kind"], iwf["form"], iwf["source"], iwf["entries"],
            iwf["stale"]) == ("iwf", "IWF URL list", "iwf", "plain", "file", 2, False)
    assert iwf["age_seconds"] is not None and iwf["age_seconds"] < 3600
    assert (ctiru["entries"], ctiru["stale"], ctiru["age_seconds"]) == (None, True, None)

    dnd = report["do_not_decrypt"]
    assert dnd["hosts_in_config"] == 1
    assert (dnd["files"][0]["domains"], dnd["files"][0]["bad_lines"]) == (1, 1)
    library = load_library(REPO / "keywords").summary()
    assert report["keyword_library"]["phrases"] == library.phrases
    assert report["keyword_library"]["by_theme"] == library.by_theme

    # Once the gateway has compiled these very files, the cache is current.
    ListIndex.load_or_build(category_sources(config), cache_path(config))
    report = json.loads(run(capsys, shown_config, "lists", "show", "--json")[1])
    assert report["cache"]["current"] is True
    assert next(c for c in report["categories"] if c["name"] == "gambling")["domains"] == 4


def test_lists_show_text(shown_config, dest, capsys):
    status, out, err = run(capsys, shown_config, "lists", "show")
    assert status == 0, err
    assert SECRET not in out
    assert "compiled list cache" in out and "NOT current (not built yet)" in out
    assert '  gambling "Gambling": 4 domains, 1 url, 0 expressions, 1 bad line' in out
    assert f"    {dest / 'gambling'}/  (imported " in out
    assert "      domains  2 domains, 1 bad line; " in out
    assert "      urls  1 url; " in out
    assert '  iwf "IWF URL list": kind iwf, form plain, from a file; 2 entries, last good copy ' in out
    assert "  ctiru: kind ctiru, form plain, from a file; NOT LOADED" in out
    assert "Do-not-decrypt lists: 1 file, and 1 host written in the config" in out
    library = load_library(REPO / "keywords").summary()
    assert f"{library.phrases:,} phrases in {library.files} files" in out
    for theme, count in library.by_theme.items():
        assert f"  {theme}  {count:,} phrase" in out

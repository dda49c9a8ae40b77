"""`make bench-proxy`: Schoolgate against bare mitmdump and e2guardian, through real load
generators, on loopback in a private network namespace, in one run (issue #14).

Everything runs inside a network namespace of its own (only `lo`, so nothing outside the
machine can be reached), with a wildcard DNS stub on 127.0.0.1:53 answering 127.0.0.1 for every
name, so every synthetic host (`h12.example-bench.test`, a name from the 1M-domain list) is the
Debian nginx origin on 127.0.0.1:80 and :443. Load generators: Debian wrk with
`proxy_load.lua` (absolute-URI forward-proxy requests) for plain HTTP, and `tunnel_load.c`
(CONNECT, TLS through the tunnel, K keep-alive requests; see its header for why C) for HTTPS.

Targets: bare mitmdump (`-q`, no scripts, `connection_strategy=lazy` as Schoolgate uses),
e2guardian (Debian package; the same 1M domains as its banned site list; plain HTTP filtering,
HTTPS as a CONNECT pass-through without MITM), Schoolgate with full filtering (1M-domain
category list, illegal lists, the keyword library with search monitoring, events stored,
metrics on) at each `--workers` value the build supports, and `direct`: the load generators
straight at nginx, the ceiling they reach on this machine (proof they are not the bottleneck).

Mixes: 1 KB responses from 100 allowed hosts (`http`); the same with every tenth request to a
name in the blocked category (`http-blocked`; Schoolgate answers 403, e2guardian its 200 block
page, counted from its access log because it then closes the connection); 50 KB HTML pages,
which both filters scan (`http-html`); HTTPS over 80 hosts (below mitmproxy's 100-certificate
cache, so no target generates certificates during a run), one request per new TLS connection
and ten per tunnel, intercepted (`https-*`) and under selective decryption (`sel-*`: 30 % of
the hosts have a URL-level list entry, so need decrypting; mitmdump's row leaves the other 70 %
alone with --ignore-hosts). Every tunnel is a full handshake (no resumption).

Per (target, mix), `--runs` runs (default 3) of `--seconds` each; the table shows the median of
each figure. CPU per request is utime+stime of the target's whole process tree (from /proc)
over the run window divided by the requests served; RSS is the tree's after the run.

Must run as root (network namespaces). Options: `--help`; environment: BENCH_PROXY_SECONDS,
BENCH_PROXY_RUNS, BENCH_PROXY_ARGS (extra flags, as `make bench-proxy` passes them).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BIN = Path(sys.executable).parent
UT1 = ROOT.parent / "shared" / "data" / "ut1"
KEYWORDS = ROOT / "keywords"
NA = "n/a (not supported by this build)"
NO_PAGES = "n/a (no pages to scan)"

DOMAIN = "example-bench.test"
PORTS = {"mitmdump": 18081, "e2guardian": 18082, "schoolgate": 18080, "metrics": 19464}
TOOLS = {"nginx": "/usr/sbin/nginx", "wrk": "wrk", "e2guardian": "/usr/sbin/e2guardian",
         "gcc": "gcc", "ip": "ip"}
APT = "nginx-light wrk e2guardian gcc libssl-dev iproute2"


# ---------------------------------------------------------------------------------------------
# Mixes


@dataclass(frozen=True)
class Mix:
    name: str
    title: str
    https: bool = False
    per_tunnel: int = 1
    blocked_every: int = 0
    html: bool = False
    unique: bool = False
    """Each page differs from every other (nginx SSI writes the request's id into it), so no
    scan's findings can come from Schoolgate's cache."""
    selective: bool = False


MIXES = [
    Mix("http", "plain HTTP, allowed"),
    Mix("http-blocked", "plain HTTP, 10 % blocked", blocked_every=10),
    Mix("http-html", "plain HTTP, 50 KB HTML pages", html=True),
    Mix("http-html-unique", "plain HTTP, 50 KB HTML pages, each different", html=True,
        unique=True),
    Mix("https-1", "HTTPS intercepted, 1 req/conn", https=True, per_tunnel=1),
    Mix("https-10", "HTTPS intercepted, 10 req/conn", https=True, per_tunnel=10),
    Mix("sel-1", "HTTPS selective (30 % decrypted), 1 req/conn", https=True, per_tunnel=1,
        selective=True),
    Mix("sel-10", "HTTPS selective (30 % decrypted), 10 req/conn", https=True, per_tunnel=10,
        selective=True),
]


# ---------------------------------------------------------------------------------------------
# Deterministic data: the 1M-domain category list, hosts, pages, certificates


TLDS = ("com", "co.uk", "net", "org", "info", "io", "uk", "eu")


def synthetic_domains(count: int) -> Iterator[str]:
    """`count` distinct domains, the same on every run: a hashed label (6 to 14 characters) and
    a TLD. Distinct because the entry number is part of the label."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    for i in range(count):
        h = hashlib.blake2b(i.to_bytes(4, "little"), digest_size=8).digest()
        n = int.from_bytes(h, "little")
        length = 4 + n % 9
        label = "".join(alphabet[(n >> (5 * k)) % 36] for k in range(length))
        yield f"{label}{i:x}.{TLDS[(n >> 60) % len(TLDS)]}"


@dataclass
class Data:
    """Files every target is given, in one temporary folder."""

    dir: Path
    category_list: Path      # the 1M domains (Schoolgate category file, e2guardian banned list)
    blocked_hosts: Path      # names from that list the blocked mix asks for
    http_hosts: Path         # allowed plain-HTTP hosts
    https_hosts: Path        # HTTPS hosts; every host i % 10 < 3 has a URL-level entry
    url_list: Path           # those URL-level entries (category list with paths)
    iwf: Path
    ctiru: Path
    origin_ca: Path
    origin_cert: Path
    origin_key: Path
    www: Path
    domains: int


def make_data(tmp: Path, domains: int, http_hosts: int, https_hosts: int) -> Data:
    d = tmp / "data"
    d.mkdir()
    category_list = d / "bench-category.txt"
    blocked: list[str] = []
    stride = max(domains // 500, 1)
    with category_list.open("w") as f:
        f.write("# synthetic bench category list (deterministic)\n")
        for i, name in enumerate(synthetic_domains(domains)):
            f.write(name + "\n")
            if i % stride == 0:
                blocked.append(f"www.{name}")
    (d / "blocked-hosts.txt").write_text("\n".join(blocked) + "\n")
    (d / "http-hosts.txt").write_text(
        "".join(f"h{i}.{DOMAIN}\n" for i in range(http_hosts)))
    names = [f"s{i}.{DOMAIN}" for i in range(https_hosts)]
    (d / "https-hosts.txt").write_text("\n".join(names) + "\n")
    # URL-level entries on 30 % of the HTTPS hosts: under selective decryption those hosts must
    # be decrypted to see the path; the rest can be relayed after their SNI is classified. The
    # load never asks for /private/, so every request is allowed.
    (d / "url-list.txt").write_text(
        "".join(f"{n}/private/\n" for i, n in enumerate(names) if i % 10 < 3))
    (d / "iwf.txt").write_text(
        "".join(f"iwf-bench-{i}.test/gallery/{i}.jpg\n" for i in range(1000)))
    # With each entry's host digest as the second column: a hashed list without it could hold a
    # page on any host, so `https: selective` would (rightly) decrypt every host; the first
    # full run did exactly that, and its selective rows cost what interception costs.
    (d / "ctiru.sha256").write_text("".join(
        hashlib.sha256(f"ctiru-bench-{i}.test/page.html".encode()).hexdigest() + " "
        + hashlib.sha256(f"ctiru-bench-{i}.test".encode()).hexdigest() + "\n"
        for i in range(1000)))
    www = d / "www"
    www.mkdir()
    (www / "small.bin").write_bytes(bytes((i * 7 + 33) % 94 + 33 for i in range(1024)))
    words = ("the school library opens at nine and pupils read about rivers mountains weather "
             "history music science art football lunch timetable homework volcano planet").split()
    para, i = [], 0
    while sum(len(p) for p in para) < 50_000:
        sentence = " ".join(words[(i * 7 + k * 3) % len(words)] for k in range(12))
        para.append(f"<p>{sentence.capitalize()}.</p>\n")
        i += 1
    (www / "page.html").write_text(
        "<!doctype html><html><head><title>Bench page</title></head><body>\n"
        + "".join(para) + "</body></html>\n")
    # The same page with the request's id in its text: every response differs.
    (www / "unique.html").write_text(
        "<!doctype html><html><head><title>Bench page</title></head><body>\n"
        "<p>Page <!--# echo var=\"request_id\" --></p>\n"
        + "".join(para) + "</body></html>\n")
    ca, cert, key = _origin_pki(d)
    return Data(d, category_list, d / "blocked-hosts.txt", d / "http-hosts.txt",
                d / "https-hosts.txt", d / "url-list.txt", d / "iwf.txt", d / "ctiru.sha256",
                ca, cert, key, www, domains)


def _origin_pki(d: Path) -> tuple[Path, Path, Path]:
    """A CA and an ECDSA certificate for `*.example-bench.test`, for nginx on :443."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench-proxy origin CA")])
    ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=7))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False,
                                       False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName([x509.DNSName(f"*.{DOMAIN}"), x509.DNSName(DOMAIN),
                                       x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"*.{DOMAIN}")]))
            .issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(san, critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = d / "origin-ca.pem", d / "origin.pem", d / "origin-key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


# ---------------------------------------------------------------------------------------------
# Processes: started in their own process group, stopped at exit whatever happens


class Processes:
    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, cmd: list[str], log: Path, **kw) -> subprocess.Popen:
        out = log.open("ab")
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                             start_new_session=True, **kw)
        out.close()
        self.procs.append((name, p))
        return p

    def stop(self, p: subprocess.Popen, timeout: float = 20) -> None:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pid, signal.SIGKILL)  # anything the group left behind
        self.procs = [(n, q) for n, q in self.procs if q is not p]

    def stop_all(self) -> None:
        for _, p in reversed(list(self.procs)):
            self.stop(p, timeout=10)


def wait_port(port: int, what: str, proc: subprocess.Popen, log: Path,
              timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} before listening "
                               f"on port {port}:\n{_tail(log)}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on port {port} in {timeout:.0f} s:\n{_tail(log)}")


def wait_serving(port: int, what: str, proc: subprocess.Popen, log: Path,
                 timeout: float = 60) -> None:
    """Until a request through the proxy on `port` to the origin is answered 200."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{_tail(log)}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", f"http://h0.{DOMAIN}/a/1", headers={"Host": f"h0.{DOMAIN}"})
            if conn.getresponse().status == 200:
                conn.close()
                return
            conn.close()
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} listens but answers no request:\n{_tail(log)}")
        time.sleep(0.1)


def _tail(log: Path, n: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


# -- the process tree, from /proc --------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def tree_cpu(pid: int) -> float:
    """utime + stime of every live process in the tree (threads included), in seconds."""
    total = 0
    for p in tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / _TICK


def machine_busy() -> float:
    """CPU seconds the whole machine has spent in processes (all cores, every namespace):
    user, nice, system and steal. Interrupt and softirq time are left out: loopback traffic is
    mostly processed there and belongs to no process, so it would read as other work."""
    user, nice, system, _idle, _iowait, _irq, _softirq, steal = (
        int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9])
    return (user + nice + system + steal) / _TICK


def tree_rss(pid: int) -> list[int]:
    """RSS in bytes of each process in the tree."""
    out = []
    for p in tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    out.append(int(line.split()[1]) * 1024)
    return out


# ---------------------------------------------------------------------------------------------
# The wildcard DNS stub: A 127.0.0.1 for every name, no AAAA (so nothing tries ::1)


def dns_stub(ready: threading.Event | None = None) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 53))
    if ready:
        ready.set()
    while True:
        query, addr = sock.recvfrom(2048)
        if len(query) < 12:
            continue
        # The question: labels up to a zero byte, then QTYPE and QCLASS.
        end = 12
        while end < len(query) and query[end]:
            end += query[end] + 1
        question = query[12:end + 5]
        qtype = struct.unpack("!H", query[end + 1:end + 3])[0] if end + 3 <= len(query) else 0
        answers = b""
        if qtype == 1:
            answers = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes([127, 0, 0, 1])
        header = query[:2] + struct.pack("!HHHHH", 0x8180, 1, 1 if answers else 0, 0, 0)
        sock.sendto(header + question + answers, addr)


# ---------------------------------------------------------------------------------------------
# Targets


@dataclass
class Target:
    name: str
    title: str
    port: int | None               # None: `direct`, straight to the origin
    supports: Callable[[Mix], str | None]   # None if it runs the mix, else why not
    ca: Path | None = None          # the CA the HTTPS client must trust (interception)
    proc: subprocess.Popen | None = None
    rss_note: str = ""
    workers: int = 1
    page_scan: bool = True          # Schoolgate: page scanning on (the default) or off


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path):
        self.args = args
        self.tmp = tmp
        self.procs = Processes()
        self.logs = tmp / "logs"
        self.logs.mkdir()
        self.data: Data
        self.tunnel_load: Path
        self.results: list[dict] = []

    # -- setup ---------------------------------------------------------------------------------

    def prepare(self) -> None:
        a = self.args
        t0 = time.monotonic()
        self.data = make_data(self.tmp, a.domains, a.http_hosts, a.https_hosts)
        print(f"data: {a.domains:,} synthetic category domains, {a.http_hosts} HTTP hosts, "
              f"{a.https_hosts} HTTPS hosts ({time.monotonic() - t0:.1f} s)", flush=True)
        self.tunnel_load = self.tmp / "tunnel_load"
        subprocess.run(["gcc", "-O2", "-o", str(self.tunnel_load), str(HERE / "tunnel_load.c"),
                        "-lssl", "-lcrypto"], check=True)
        threading.Thread(target=dns_stub, daemon=True, name="dns").start()
        # The stub must answer before anything resolves a name.
        for _ in range(50):
            try:
                if socket.gethostbyname(f"probe.{DOMAIN}") == "127.0.0.1":
                    break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError("the wildcard DNS stub does not answer (is /etc/resolv.conf the "
                               "namespace's?)")
        self.start_nginx()

    def start_nginx(self) -> None:
        d = self.data
        conf = self.tmp / "nginx.conf"
        conf.write_text(f"""
worker_processes 1;
daemon off;
pid {self.tmp}/nginx.pid;
error_log {self.logs}/nginx-error.log warn;
worker_rlimit_nofile 65536;
events {{ worker_connections 32768; multi_accept on; }}
http {{
    access_log off;
    types {{ text/html html; application/octet-stream bin; }}
    default_type application/octet-stream;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    client_body_temp_path {self.tmp}/nginx-body;
    ssl_protocols TLSv1.2 TLSv1.3;
    server {{
        listen 127.0.0.1:80 default_server backlog=4096;
        listen 127.0.0.1:443 ssl default_server backlog=4096;
        server_name _;
        ssl_certificate {d.origin_cert};
        ssl_certificate_key {d.origin_key};
        root {d.www};
        location /a/ {{ try_files /small.bin =404; }}
        location /page/ {{ try_files /page.html =404; }}
        location /unique/ {{ ssi on; try_files /unique.html =404; }}
    }}
}}
""")
        log = self.logs / "nginx.log"
        self.nginx = self.procs.start("nginx", [TOOLS["nginx"], "-c", str(conf), "-p",
                                                str(self.tmp)], log)
        wait_port(443, "nginx", self.nginx, log, timeout=20)
        wait_port(80, "nginx", self.nginx, log, timeout=20)
        # The unique mix is only a measure of uncached scanning if its pages really differ.
        pages = set()
        for _ in range(2):
            conn = http.client.HTTPConnection("127.0.0.1", 80, timeout=10)
            conn.request("GET", "/unique/1.html", headers={"Host": f"h0.{DOMAIN}"})
            pages.add(conn.getresponse().read())
            conn.close()
        if len(pages) != 2 or any(b"<!--#" in p for p in pages):
            raise RuntimeError("nginx's SSI did not make each /unique/ page differ")

    # -- target support ------------------------------------------------------------------------

    def schoolgate_features(self) -> tuple[bool, bool]:
        """Whether this build has `run --workers` and `https: selective`."""
        out = subprocess.run([str(BIN / "schoolgate"), "run", "--help"], capture_output=True,
                             text=True, check=False).stdout
        workers = "--workers" in out
        probe = self.tmp / "probe"

        def loads(selective: bool) -> subprocess.CompletedProcess:
            config = self.schoolgate_config(probe, selective=selective)
            return subprocess.run([sys.executable, "-c",
                                   "import sys; from schoolgate.config.loader import load_config;"
                                   " load_config(sys.argv[1])", str(config)],
                                  capture_output=True, text=True, check=False)

        # The decrypt config must load, or a mistake here would pass for a missing feature.
        if (r := loads(False)).returncode:
            raise RuntimeError(f"the bench's Schoolgate config does not load:\n{r.stderr}")
        return workers, loads(True).returncode == 0

    def schoolgate_config(self, where: Path, *, selective: bool, page_scan: bool = True) -> Path:
        d = self.data
        categories = {
            "gambling": {"title": "Gambling (synthetic 1M-domain list)",
                         "lists": [str(d.category_list)]},
            "bench_urls": {"title": "URL-level entries", "lists": [str(d.url_list)]},
        }
        blocked = ["gambling", "bench_urls"]
        if self.args.ut1:
            for folder in sorted(p for p in UT1.iterdir() if p.is_dir()):
                if any((folder / f).exists() for f in ("domains", "urls", "expressions")):
                    categories[f"ut1_{folder.name}"] = {"title": folder.name,
                                                        "lists": [str(folder)]}
        doc = {
            "school": {"name": "Bench School", "timezone": "Europe/London"},
            "listen": {"host": "127.0.0.1", "port": PORTS["schoolgate"]},
            "metrics": {"host": "127.0.0.1", "port": PORTS["metrics"]},
            "data_dir": str(where / "data"),
            "ca_dir": str(self.tmp / "schoolgate-ca"),
            "upstream_trusted_ca": str(d.origin_ca),
            "illegal_lists": {
                "iwf": {"title": "IWF (synthetic)", "kind": "iwf", "source": str(d.iwf),
                        "form": "plain"},
                "ctiru": {"title": "CTIRU (synthetic)", "kind": "ctiru", "source": str(d.ctiru),
                          "form": "sha256"},
            },
            "categories": categories,
            "keywords": {"library": str(KEYWORDS)},
            "groups": {"pupils": {"title": "Pupils", "subnets": ["127.0.0.0/8"],
                                  "blocked_categories": blocked,
                                  "https": "selective" if selective else "decrypt",
                                  **({} if page_scan else {"page_scan": "off"})}},
            "default_group": "pupils",
        }
        where.mkdir(parents=True, exist_ok=True)
        path = where / (f"schoolgate{'-selective' if selective else ''}"
                        f"{'' if page_scan else '-noscan'}.yaml")
        path.write_text(json.dumps(doc, indent=1))  # JSON is YAML
        return path

    def targets(self) -> list[Target]:
        workers_ok, selective_ok = self.schoolgate_features()
        self.features = {"workers": workers_ok, "selective": selective_ok}
        wanted = self.args.targets
        out: list[Target] = []

        def every(_: Mix) -> str | None:
            return None

        if "direct" in wanted:
            out.append(Target("direct", "load generator straight to nginx (ceiling)", None,
                              lambda m: "no filtering" if m.blocked_every else None))
        if "mitmdump" in wanted:
            out.append(Target("mitmdump", "bare mitmdump -q, no addons", PORTS["mitmdump"],
                              every))
        if "e2guardian" in wanted:
            out.append(Target("e2guardian", "e2guardian 5 (HTTPS: CONNECT pass-through)",
                              PORTS["e2guardian"], every))
        if "schoolgate" in wanted:
            for w in self.args.workers:
                def sg_supports(m: Mix, w: int = w) -> str | None:
                    if w != 1 and not workers_ok:
                        return NA
                    if m.selective and not selective_ok:
                        return NA
                    return None
                name = "schoolgate" if w == 1 else f"schoolgate-w{w}"
                out.append(Target(name, f"Schoolgate, full filtering, {w} worker(s)",
                                  PORTS["schoolgate"], sg_supports, workers=w))
        if "schoolgate-noscan" in wanted:
            # The same with page scanning off: the page scan's cost, scanning on against off
            # in the same run (#16). Only the HTML mixes have pages to scan.
            out.append(Target("schoolgate-noscan", "Schoolgate, page scanning off, 1 worker",
                              PORTS["schoolgate"],
                              lambda m: None if m.html else NO_PAGES,
                              page_scan=False))
        return out

    # -- starting and stopping targets ---------------------------------------------------------

    def start(self, t: Target, mix: Mix | None = None) -> None:
        log = self.logs / f"{t.name}.log"
        if t.name == "direct":
            return
        if t.name == "mitmdump":
            confdir = self.tmp / "mitmdump-conf"
            cmd = [str(BIN / "mitmdump"), "-q", "--listen-host", "127.0.0.1",
                   "--listen-port", str(t.port), "--set", f"confdir={confdir}",
                   "--set", "connection_strategy=lazy",
                   "--set", f"ssl_verify_upstream_trusted_ca={self.data.origin_ca}"]
            if mix is not None and mix.selective:
                # Schoolgate relays 70 % of the hosts under selective decryption; mitmdump's
                # nearest equivalent is not intercepting them at all.
                relayed = [f"s{i}" for i in range(self.args.https_hosts) if i % 10 >= 3]
                cmd += ["--ignore-hosts",
                        rf"^({'|'.join(relayed)})\.{re.escape(DOMAIN)}:443$"]
            t.ca = confdir / "mitmproxy-ca-cert.pem"
            t.proc = self.procs.start(t.name, cmd, log)
        elif t.name == "e2guardian":
            conf = self.e2guardian_config()
            t.proc = self.procs.start(t.name, [TOOLS["e2guardian"], "-N", "-c", str(conf)], log)
        else:
            workers = t.workers
            selective = mix is not None and mix.selective
            config = self.schoolgate_config(self.tmp / "sg", selective=selective,
                                            page_scan=t.page_scan)
            cmd = [str(BIN / "schoolgate"), "run", "--config", str(config),
                   "--listen", f"127.0.0.1:{t.port}", "--metrics", f"127.0.0.1:{PORTS['metrics']}"]
            if self.features.get("workers"):
                # Always explicit: the build's default is one worker per core, so leaving the
                # flag out for one worker measured two on this machine.
                cmd += ["--workers", str(workers)]
            env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
            t.proc = self.procs.start(t.name, cmd, log, env=env)
            t.ca = self.tmp / "schoolgate-ca" / "mitmproxy-ca-cert.pem"
        assert t.port is not None and t.proc is not None
        wait_port(t.port, t.name, t.proc, log)
        if t.ca is not None:
            deadline = time.monotonic() + 20
            while not t.ca.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
        # Listening is not serving: a Schoolgate supervisor holds the port while its workers
        # still load their rules. Ready once a request through it comes back (measured runs
        # must not start with the workers' start-up in them).
        wait_serving(t.port, t.name, t.proc, log)
        time.sleep(0.5)  # let start-up work (first timers) settle

    def stop(self, t: Target) -> None:
        if t.proc is not None:
            self.procs.stop(t.proc)
            t.proc = None

    def e2guardian_config(self) -> Path:
        """The Debian package's configuration, copied with its paths moved to the temp folder,
        the same 1M domains as its banned site list, no daemon, logs in the temp folder."""
        base = self.tmp / "e2guardian"
        if (base / "e2guardian.conf").exists():
            return base / "e2guardian.conf"
        shutil.copytree("/etc/e2guardian", base, symlinks=False)
        for f in base.rglob("*"):
            if f.is_file() and (f.suffix in (".conf", ".story") or f.name.endswith("list")):
                with contextlib.suppress(UnicodeDecodeError):
                    text = f.read_text()
                    if "/etc/e2guardian" in text:
                        f.write_text(text.replace("/etc/e2guardian", str(base)))
        lists = base / "lists"
        (lists / "bannedsitelist").write_text(self.data.category_list.read_text())
        # Lists the stock config bans that the bench's requests must not hit by accident.
        for name in ("bannedurllist", "bannedregexpurllist", "bannedsslsitelist"):
            (lists / name).write_text("")
        main = base / "e2guardian.conf"
        text = main.read_text()
        logdir = self.tmp / "e2guardian-log"
        logdir.mkdir(exist_ok=True)
        overrides = {
            "filterip": "127.0.0.1",
            "filterports": str(PORTS["e2guardian"]),
            "nodaemon": "on",
            "loglocation": f"'{logdir}/access.log'",
            "pidfilename": f"'{self.tmp}/e2guardian.pid'",
            "daemonuser": "'root'",
            "daemongroup": "'root'",
            "dstatlocation": f"'{logdir}/dstats.log'",
        }
        lines = [ln for ln in text.splitlines()
                 if ln.split("=")[0].strip() not in overrides]
        lines += [f"{k} = {v}" for k, v in overrides.items()]
        main.write_text("\n".join(lines) + "\n")
        return main

    # -- one run -------------------------------------------------------------------------------

    def run_once(self, t: Target, mix: Mix, seconds: float) -> dict:
        pid = t.proc.pid if t.proc else None
        cpu0 = tree_cpu(pid) if pid else 0.0
        origin0 = tree_cpu(self.nginx.pid)
        denied0 = self.e2guardian_denied() if t.name == "e2guardian" else 0
        busy0, own0 = machine_busy(), _own_cpu()
        w0 = time.monotonic()
        if mix.https:
            result = self.run_tunnel_load(t, mix, seconds)
        else:
            result = self.run_wrk(t, mix, seconds)
        wall = time.monotonic() - w0
        cpu1 = tree_cpu(pid) if pid else 0.0
        busy = machine_busy() - busy0
        if t.name == "e2guardian" and mix.blocked_every:
            self.reconcile_e2guardian_blocks(result, denied0)
        result["target_cpu_s"] = cpu1 - cpu0
        result["origin_cpu_s"] = tree_cpu(self.nginx.pid) - origin0
        # CPU the machine spent on anything but this cell (other work on the machine): when it
        # is large, the cell's figures were measured on a busy machine.
        result["other_cpu_share"] = max(0.0, busy - result["target_cpu_s"] - result["origin_cpu_s"]
                                        - result["loadgen_cpu_s"] - (_own_cpu() - own0)) / wall
        result["wall_s"] = wall
        rss = tree_rss(pid) if pid else []
        result["rss_bytes"] = sum(rss)
        result["rss_max_process_bytes"] = max(rss, default=0)
        result["processes"] = len(rss)
        n = result["requests"]
        result["rate"] = n / result["seconds"] if result["seconds"] else 0.0
        result["cpu_us_per_req"] = result["target_cpu_s"] / n * 1e6 if n else float("nan")
        result["loadgen_cpu_share"] = result["loadgen_cpu_s"] / wall if wall else 0.0
        if mix.https:
            result["conn_rate"] = result["tunnels_done"] / result["seconds"]
        return result

    def e2guardian_denied(self) -> int:
        log = self.tmp / "e2guardian-log" / "access.log"
        try:
            return log.read_bytes().count(b"*DENIED*")
        except OSError:
            return 0

    def reconcile_e2guardian_blocks(self, result: dict, denied0: int) -> None:
        """e2guardian answers a block with `HTTP/1.1 200`, its block page and no length, then
        closes the connection: wrk sees a read error, not a response. Its access log marks each
        block `*DENIED*` (with status 403); that count is the blocked figure, and as many read
        errors are block pages served, not errors."""
        time.sleep(0.5)  # e2guardian's logger thread writes behind the traffic
        denied = self.e2guardian_denied() - denied0
        served = min(denied, result["error_detail"]["read"])
        result["error_detail"]["read"] -= served
        result["errors"] -= served
        result["requests"] += served
        result["blocked"] = denied

    def run_wrk(self, t: Target, mix: Mix, seconds: float) -> dict:
        d = self.data
        url = f"http://127.0.0.1:{t.port}/" if t.port else "http://127.0.0.1:80/"
        env = dict(os.environ)
        if mix.blocked_every:
            env["BENCH_COUNT_STATUS"] = "1"
        cmd = [TOOLS["wrk"], "-t", "1", "-c", str(self.args.concurrency),
               "-d", f"{max(seconds, 1):.0f}s" if seconds >= 1 else "1s",
               "--timeout", "10s", "-s", str(HERE / "proxy_load.lua"), url, "--",
               str(d.http_hosts), str(d.blocked_hosts) if mix.blocked_every else "-",
               str(mix.blocked_every),
               "unique" if mix.unique else "html" if mix.html else "small"]
        out, cpu = _run_measured(cmd, env, seconds + 30)
        m = re.search(r"^BENCH-JSON (\{.*\})$", out, re.M)
        if not m:
            raise RuntimeError(f"wrk printed no result:\n{out}")
        r = json.loads(m[1])
        errors = dict(r["errors"])
        if mix.blocked_every:
            # Only 403 block pages are expected among non-2xx/3xx; count them apart.
            errors["status"] = r["status_other"]
        return {"requests": r["requests"], "seconds": r["duration_us"] / 1e6,
                "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"], "errors": sum(errors.values()),
                "error_detail": errors, "blocked": r["status_403"] if mix.blocked_every else 0,
                "bytes": r["bytes"], "loadgen_cpu_s": cpu}

    def run_tunnel_load(self, t: Target, mix: Mix, seconds: float) -> dict:
        bundle = self.tmp / f"trust-{t.name}.pem"
        bundle.write_bytes(self.data.origin_ca.read_bytes()
                           + (t.ca.read_bytes() if t.ca and t.ca.exists() else b""))
        where = ["--proxy", f"127.0.0.1:{t.port}"] if t.port else ["--direct", "127.0.0.1:443"]
        cmd = [str(self.tunnel_load), *where, "--hosts", str(self.data.https_hosts),
               "--cafile", str(bundle), "--per-tunnel", str(mix.per_tunnel),
               "--concurrency", str(self.args.concurrency), "--seconds", str(seconds)]
        out, cpu = _run_measured(cmd, dict(os.environ), seconds + 30)
        try:
            r = json.loads(out.strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError):
            raise RuntimeError(f"tunnel_load printed no result:\n{out}") from None
        errors = dict(r["errors"])
        errors["status"] = r["status_other"] + r["status_403"]
        return {"requests": r["requests"], "seconds": r["seconds"], "p50_ms": r["p50_ms"],
                "p99_ms": r["p99_ms"], "errors": sum(errors.values()), "error_detail": errors,
                "blocked": 0, "bytes": r["bytes"], "tunnels_done": r["tunnels_done"],
                "tunnels_partial": r["tunnels_partial"], "per_tunnel": r["per_tunnel"],
                "setup_p50_ms": r["setup_p50_ms"], "setup_p99_ms": r["setup_p99_ms"],
                "loadgen_cpu_s": cpu}

    # -- the whole run -------------------------------------------------------------------------

    def run(self) -> list[dict]:
        a = self.args
        mixes = [m for m in MIXES if m.name in a.mixes]
        for t in self.targets():
            started_for: bool | None = None  # the selective flag the running target was given
            for mix in mixes:
                why = t.supports(mix)
                if why:
                    self.results.append({"target": t.name, "mix": mix.name, "skipped": why})
                    continue
                needs = mix.selective if t.name != "e2guardian" else False
                if t.name != "direct" and started_for != needs:
                    self.stop(t)
                    t0 = time.monotonic()
                    self.start(t, mix)
                    started_for = needs
                    print(f"  {t.name} started ({time.monotonic() - t0:.1f} s)", flush=True)
                if a.warmup > 0:
                    self.run_once(t, mix, a.warmup)
                for n in range(a.runs):
                    r = self.run_once(t, mix, a.seconds)
                    r.update(target=t.name, mix=mix.name, run=n + 1)
                    self.results.append(r)
                    print(f"  {t.name:14} {mix.name:13} run {n + 1}: {r['rate']:8.0f} req/s "
                          f"p99 {r['p99_ms']:7.2f} ms errors {r['errors']} "
                          f"blocked {r['blocked']} cpu {r['cpu_us_per_req']:.0f} us/req "
                          f"loadgen cpu {r['loadgen_cpu_share']:.0%}", flush=True)
                    if r["errors"] and a.fail_on_errors:
                        raise RuntimeError(f"{t.name} {mix.name}: {r['error_detail']}; see "
                                           f"{self.logs / (t.name + '.log')}:\n"
                                           f"{_tail(self.logs / (t.name + '.log'))}")
                if a.profile and t.name.startswith("schoolgate"):
                    self.profile(t, mix, a.seconds)
            self.stop(t)
        return self.results

    def profile(self, t: Target, mix: Mix, seconds: float) -> None:
        """One extra run under py-spy (100 Hz, not blocking the target, every process of the
        tree), outside the measured runs so sampling never touches the table's figures."""
        assert t.proc is not None
        folder = self.args.profile
        folder.mkdir(parents=True, exist_ok=True)
        raw = folder / f"{t.name}-{mix.name}.txt"
        spy = subprocess.Popen(
            [str(BIN / "py-spy"), "record", "--pid", str(t.proc.pid), "--subprocesses",
             "--nonblocking", "--rate", "100", "--duration", str(max(1, int(seconds))),
             "--format", "raw", "-o", str(raw)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.run_once(t, mix, seconds)
        spy.wait(60)
        summary = profile_summary(raw.read_text() if raw.exists() else "")
        (folder / f"{t.name}-{mix.name}.summary.txt").write_text(summary)
        first = summary.splitlines()[0] if summary else "no samples"
        print(f"  profile {t.name} {mix.name}: {first}", flush=True)


def profile_summary(raw: str, top: int = 15) -> str:
    """From py-spy's raw (collapsed) stacks: the share of samples in Schoolgate's own code, the
    functions with the most samples of their own, and Schoolgate's functions by inclusive share."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = ours = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        total += n
        own[frames[-1]] = own.get(frames[-1], 0) + n
        mine = {f for f in frames if "schoolgate/" in f and "/cli/" not in f}
        if mine:
            ours += n
        for f in mine:
            inclusive[f] = inclusive.get(f, 0) + n
    if not total:
        return ""
    lines = [f"{total} samples, {ours / total:.1%} inside Schoolgate's own functions "
             "(the rest: mitmproxy, asyncio, TLS, the event writer thread)", "", "self:"]
    lines += [f"  {n / total:6.1%}  {f}" for f, n in sorted(own.items(), key=lambda x: -x[1])[:top]]
    lines += ["", "Schoolgate, inclusive:"]
    lines += [f"  {n / total:6.1%}  {f}"
              for f, n in sorted(inclusive.items(), key=lambda x: -x[1])[:top]]
    return "\n".join(lines) + "\n"


def _own_cpu() -> float:
    """This process's CPU time (the harness and its DNS stub thread)."""
    t = os.times()
    return t.user + t.system


def _run_measured(cmd: list[str], env: dict, timeout: float) -> tuple[str, float]:
    """Run a load generator to completion; its output and its own CPU time (wait4 rusage)."""
    with tempfile.TemporaryFile() as out:
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                p.kill()
                raise RuntimeError(f"{cmd[0]} did not finish in {timeout:.0f} s")
            time.sleep(0.05)
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode(errors="replace")
    if p.returncode:
        raise RuntimeError(f"{' '.join(cmd)} exited with {p.returncode}:\n{text}")
    return text, usage.ru_utime + usage.ru_stime


# ---------------------------------------------------------------------------------------------
# The table


def summarise(results: list[dict]) -> dict[tuple[str, str], dict]:
    """Median of each figure over a cell's runs; a skipped cell keeps its reason."""
    cells: dict[tuple[str, str], list[dict]] = {}
    skipped: dict[tuple[str, str], str] = {}
    for r in results:
        key = (r["target"], r["mix"])
        if "skipped" in r:
            skipped[key] = r["skipped"]
        else:
            cells.setdefault(key, []).append(r)
    out: dict[tuple[str, str], dict] = {k: {"skipped": v} for k, v in skipped.items()}
    for key, runs in cells.items():
        med = {f: statistics.median(r[f] for r in runs)
               for f in ("rate", "p50_ms", "p99_ms", "cpu_us_per_req", "rss_bytes",
                         "rss_max_process_bytes", "loadgen_cpu_share", "origin_cpu_s",
                         "other_cpu_share",
                         "target_cpu_s", "seconds")}
        med["errors"] = sum(r["errors"] for r in runs)
        med["requests"] = sum(r["requests"] for r in runs)
        med["blocked"] = sum(r["blocked"] for r in runs)
        med["blocked_share"] = med["blocked"] / med["requests"] if med["requests"] else 0.0
        med["processes"] = max(r["processes"] for r in runs)
        med["runs"] = len(runs)
        if "conn_rate" in runs[0]:
            med["conn_rate"] = statistics.median(r["conn_rate"] for r in runs)
            med["tunnels_done"] = sum(r["tunnels_done"] for r in runs)
            med["per_tunnel"] = runs[0]["per_tunnel"]
        out[key] = med
    return out


def table(summary: dict[tuple[str, str], dict], mixes: list[Mix], targets: list[str]) -> str:
    lines = []
    head = (f"{'mix':14} {'target':15} {'req/s':>8} {'conn/s':>7} {'p50 ms':>7} {'p99 ms':>8} "
            f"{'errors':>6} {'blocked':>7} {'cpu us/req':>10} {'RSS MiB':>8} {'max/proc':>8} "
            f"{'gen cpu':>7} {'other':>5} {'/mitm':>6} {'/e2g':>6}")
    lines.append(head)
    lines.append("-" * len(head))
    for mix in mixes:
        base_m = summary.get(("mitmdump", mix.name), {})
        base_e = summary.get(("e2guardian", mix.name), {})
        for t in targets:
            s = summary.get((t, mix.name))
            if s is None:
                continue
            if "skipped" in s:
                lines.append(f"{mix.name:14} {t:15} {s['skipped']}")
                continue

            def ratio(base: dict, s: dict = s, t: str = t) -> str:
                if not t.startswith("schoolgate") or not base.get("rate"):
                    return ""
                return f"{s['rate'] / base['rate']:5.2f}x"

            conn = f"{s['conn_rate']:7.0f}" if "conn_rate" in s else f"{'':7}"
            blocked = f"{s['blocked_share']:6.1%}" if mix.blocked_every else ""
            lines.append(
                f"{mix.name:14} {t:15} {s['rate']:8.0f} {conn} {s['p50_ms']:7.2f} "
                f"{s['p99_ms']:8.2f} {s['errors']:6d} {blocked:>7} {s['cpu_us_per_req']:10.0f} "
                f"{s['rss_bytes'] / 2**20:8.1f} {s['rss_max_process_bytes'] / 2**20:8.1f} "
                f"{s['loadgen_cpu_share']:7.0%} {s['other_cpu_share']:5.0%} "
                f"{ratio(base_m):>6} {ratio(base_e):>6}")
        lines.append("")
    return "\n".join(lines)


def targets_check(summary: dict[tuple[str, str], dict]) -> list[str]:
    """The issue's targets, each with the figures it compares (none are asserted)."""
    def get(t: str, m: str, f: str) -> float | None:
        s = summary.get((t, m))
        return None if s is None or "skipped" in s else s.get(f)

    out = []

    def line(text: str, ok: bool | None) -> None:
        out.append(f"  [{'n/a' if ok is None else 'met' if ok else 'NOT met'}] {text}")

    sg, mt, e2 = get("schoolgate", "http", "rate"), get("mitmdump", "http", "rate"), \
        get("e2guardian", "http", "rate")
    w2 = get("schoolgate-w2", "http", "rate")
    if sg and mt:
        line(f"plain HTTP, 1 worker >= 1.0x mitmdump: {sg / mt:.2f}x", sg >= mt)
    if mt:
        line(f"plain HTTP, --workers 2 >= 1.8x mitmdump: "
             f"{f'{w2 / mt:.2f}x' if w2 else 'n/a'}", None if not w2 else w2 >= 1.8 * mt)
    p_sg, p_mt = get("schoolgate", "http", "p99_ms"), get("mitmdump", "http", "p99_ms")
    if p_sg and p_mt:
        line(f"plain HTTP p99 no worse than mitmdump: {p_sg:.2f} vs {p_mt:.2f} ms", p_sg <= p_mt)
    sel = get("schoolgate", "sel-1", "rate")
    if e2:
        line(f"HTTPS selective, 1 req/conn >= e2guardian plain HTTP: "
             f"{f'{sel:.0f} vs {e2:.0f} req/s' if sel else 'n/a'}",
             None if not sel else sel >= e2)
    for m in ("http-html", "http-html-unique"):
        on, off = get("schoolgate", m, "rate"), get("schoolgate-noscan", m, "rate")
        if on and off:
            line(f"{m}: page scanning cuts the rate by <= 15 %: {on:.0f} against {off:.0f} "
                 f"req/s ({on / off - 1:+.1%})", on >= 0.85 * off)
    c_sg, c_mt = get("schoolgate", "https-1", "cpu_us_per_req"), \
        get("mitmdump", "https-1", "cpu_us_per_req")
    if c_sg and c_mt:
        line(f"CPU per intercepted request <= half mitmdump's (https-1): {c_sg:.0f} vs "
             f"{c_mt:.0f} us", c_sg <= c_mt / 2)
    return out


# ---------------------------------------------------------------------------------------------
# Entry: the outer process makes the namespace and runs the inner one inside it


def parse_args(argv: list[str]) -> argparse.Namespace:
    env_args = os.environ.get("BENCH_PROXY_ARGS", "").split()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float,
                   default=float(os.environ.get("BENCH_PROXY_SECONDS", "10")),
                   help="length of each measured run (default 10)")
    p.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_PROXY_RUNS", "3")),
                   help="runs per (target, mix); the table shows medians (default 3)")
    p.add_argument("--warmup", type=float, default=2.0,
                   help="unrecorded run before each cell, seconds (default 2; 0 for none)")
    p.add_argument("--concurrency", type=int, default=32,
                   help="client connections kept busy by each load generator (default 32)")
    p.add_argument("--domains", type=int, default=1_000_000,
                   help="synthetic category list size (default 1,000,000)")
    p.add_argument("--http-hosts", type=int, default=100)
    p.add_argument("--https-hosts", type=int, default=80,
                   help="HTTPS host names (below mitmproxy's 100-certificate cache)")
    p.add_argument("--workers", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2],
                   help="Schoolgate worker counts, comma-separated (default 1,2)")
    p.add_argument("--targets", type=lambda s: s.split(","),
                   default=["direct", "mitmdump", "e2guardian", "schoolgate",
                            "schoolgate-noscan"])
    p.add_argument("--mixes", type=lambda s: s.split(","), default=[m.name for m in MIXES])
    p.add_argument("--ut1", action="store_true",
                   help=f"also give Schoolgate every UT1 category from {UT1} (for the RSS figure)")
    p.add_argument("--json", type=Path, help="write every run and the medians here")
    p.add_argument("--fail-on-errors", action="store_true",
                   help="stop at the first run with errors (the smoke test uses it)")
    p.add_argument("--profile", type=Path, metavar="DIR",
                   help="after each Schoolgate cell, one more run (not counted) under py-spy "
                        "over the whole process tree; raw samples and a summary per cell in DIR")
    p.add_argument("--inside", metavar="NETNS", help=argparse.SUPPRESS)
    args = p.parse_args(env_args + argv)
    unknown = set(args.mixes) - {m.name for m in MIXES}
    if unknown:
        p.error(f"unknown mix {sorted(unknown)}; mixes are {[m.name for m in MIXES]}")
    return args


def check_tools() -> None:
    missing = [n for n, path in TOOLS.items() if shutil.which(path) is None]
    if not Path("/usr/include/openssl/ssl.h").exists():
        missing.append("libssl-dev")
    if missing:
        sys.exit(f"bench-proxy: missing {', '.join(missing)}; install with "
                 f"apt-get install {APT}")


def outer(argv: list[str]) -> int:
    if os.geteuid() != 0:
        sys.exit("bench-proxy: must run as root (it makes a private network namespace so "
                 "everything stays on loopback); try: sudo make bench-proxy")
    check_tools()
    ns = f"sgbench{os.getpid()}"
    etc = Path("/etc/netns") / ns
    inner: subprocess.Popen | None = None
    try:
        subprocess.run(["ip", "netns", "add", ns], check=True)
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True)
        etc.mkdir(parents=True)
        (etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:2\n")
        inner = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, __file__,
                                  "--inside", ns, *argv], start_new_session=True)
        try:
            return inner.wait()
        except KeyboardInterrupt:
            os.killpg(inner.pid, signal.SIGTERM)
            try:
                inner.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(inner.pid, signal.SIGKILL)
            return 130
    finally:
        # Whatever is left in the namespace goes with it.
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True,
                              check=False).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
        shutil.rmtree(etc, ignore_errors=True)


def inside(args: argparse.Namespace) -> int:
    interfaces = sorted(os.listdir("/sys/class/net"))
    if interfaces != ["lo"]:
        sys.exit(f"bench-proxy: refusing to run with network interfaces {interfaces}: only the "
                 "private namespace's loopback may be used")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    with tempfile.TemporaryDirectory(prefix="bench-proxy-") as t:
        # nginx's workers and e2guardian drop root; they must read the files in here.
        os.chmod(t, 0o755)  # noqa: S103 - only synthetic lists, pages and test keys in here
        bench = Bench(args, Path(t))
        try:
            bench.prepare()
            results = bench.run()
        except RuntimeError as e:
            print(f"bench-proxy: {e}", file=sys.stderr)
            return 1
        finally:
            bench.procs.stop_all()
        mixes = [m for m in MIXES if m.name in args.mixes]
        names = list(dict.fromkeys(r["target"] for r in results))
        summary = summarise(results)
        print(f"\nbench-proxy: {args.runs} run(s) of {args.seconds:g} s per cell (median), "
              f"{args.concurrency} connections, {os.cpu_count()} cores shared by load generator, "
              f"origin and proxy; {args.domains:,}-domain category list"
              f"{' + full UT1' if args.ut1 else ''}")
        print("conn/s: new client connections (tunnels) completed per second; gen cpu: the load "
              "generator's own CPU share of one core; other: CPU share the machine spent on work "
              "outside this bench (high means a busy machine); RSS: the target's process tree "
              "after the run, max/proc its largest process; /mitm, /e2g: Schoolgate req/s over "
              "bare mitmdump's and e2guardian's.")
        print("e2guardian relays HTTPS without MITM (CONNECT pass-through); mitmdump on the "
              "selective mixes leaves the 70 % relayed hosts alone with --ignore-hosts; "
              "mitmdump and direct do not filter, so their blocked count is 0.\n")
        print(table(summary, mixes, names))
        for line in targets_check(summary):
            print(line)
        if args.json:
            args.json.write_text(json.dumps({
                "features": bench.features,
                "runs": results,
                "summary": [{"target": k[0], "mix": k[1], **v} for k, v in summary.items()],
            }, indent=1, default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.inside:
        return inside(args)
    return outer(argv)


if __name__ == "__main__":
    sys.exit(main())

"""The gateway's listening sockets (the proxy, the metrics endpoint, the IP map push API), bound
before anything else starts, each failing with one message in Schoolgate's terms: which address,
what for, who holds it when the system says, and which config key or option to change.

Who holds a port is read from /proc (Linux: the listening socket's inode in /proc/net/tcp, then
the process with that inode among its open files), as `ss -ltnp` does; where that cannot be
known (another user's process, another system) the message simply leaves it out.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from ..config.model import Address

__all__ = ["METRICS", "PROXY", "PUSH", "ListenError", "Listener", "bind_listening",
           "port_holder"]

BACKLOG = 1024


class ListenError(Exception):
    """A port cannot be listened on; the message says why and what to change, for the
    technician. Nothing has been started when it is raised."""


@dataclass(frozen=True, slots=True)
class Listener:
    """What a listening port is for, and where a technician changes it."""

    what: str
    """Said after "cannot listen on HOST:PORT for": `the proxy`."""
    key: str
    """The config section with its `host` and `port`: `listen`."""
    option: str | None
    """The `schoolgate run` option that overrides it, if there is one: `--listen`."""


PROXY = Listener("the proxy", "listen", "--listen")
METRICS = Listener("the metrics endpoint", "metrics", "--metrics")
PUSH = Listener("the IP map push API", "identity.push.listen", None)


def bind_listening(address: Address, listener: Listener, config: Path | None = None, *,
                   inheritable: bool = False) -> socket.socket:
    """A listening TCP socket on `address` (port 0: the OS picks), with SO_REUSEADDR (a restart
    need not wait for old connections in TIME_WAIT) and never SO_REUSEPORT (a second gateway
    on the port must fail, not share it). `config` is named in the message when given."""
    host = address.host or "0.0.0.0"  # noqa: S104 - host '' asks for every interface
    try:
        infos = socket.getaddrinfo(host, address.port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ListenError(_message(address, listener, config, f"{e.strerror}")) from None
    family, kind, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(BACKLOG)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            holder = port_holder(address.port, host) if address.port else None
            first = "Stop that program, or choose"
            if holder is None:
                problem = "address already in use (is another schoolgate running?)"
            elif holder[1] == os.getpid():
                # Two of this gateway's own ports are the same (--listen and --metrics alike).
                problem = "this gateway already listens there for another purpose"
                first = "Choose"
            elif holder[0] == "schoolgate":
                problem = f"address already in use by another schoolgate (pid {holder[1]})"
                first = "Stop it, or choose"
            else:
                problem = f"address already in use by {holder[0]} (pid {holder[1]})"
            advice = f"{first} another port: {listener.key}.port"
            raise ListenError(_message(address, listener, config, problem, advice)) from None
        reason = (e.strerror or str(e)).lower()
        if e.errno == errno.EACCES and 0 < address.port < 1024:
            reason += " (a port below 1024 needs root or CAP_NET_BIND_SERVICE)"
        raise ListenError(_message(address, listener, config, reason)) from None
    sock.set_inheritable(inheritable)
    return sock


def _message(address: Address, listener: Listener, config: Path | None, problem: str,
             advice: str | None = None) -> str:
    """One line: what failed and why, then what to change (`advice`, naming the key; by
    default another address) and where."""
    if advice is None:
        advice = f"Choose another address: {listener.key}.host and {listener.key}.port"
    where = f" in {config}" if config is not None else " in the config"
    option = f", or {listener.option} HOST:PORT" if listener.option else ""
    return (f"cannot listen on {_shown(address)} for {listener.what}: {problem}. "
            f"{advice}{where}{option}.")


def _shown(address: Address) -> str:
    host = address.host or "*"
    return f"[{host}]:{address.port}" if ":" in host else f"{host}:{address.port}"


# -- who holds a port ---------------------------------------------------------------------------

_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's `st` column


def port_holder(port: int, host: str = "0.0.0.0",  # noqa: S104 - the address asked for
                proc: Path = Path("/proc")) -> tuple[str, int] | None:
    """The program name and pid of a process listening on TCP `port` where a socket bound to
    `host` would clash (the same address, or either one every interface), or None when the
    system does not say. `schoolgate` for a Schoolgate gateway (its supervisor, when its workers
    share the socket)."""
    try:
        wanted = _address(host)
    except ValueError:
        wanted = None
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text(encoding="ascii").splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != _LISTEN:
                continue
            hex_address, _, hex_port = fields[1].partition(":")
            if int(hex_port, 16) != port:
                continue
            bound = _proc_address(hex_address)
            if (wanted is None or bound is None or bound.is_unspecified
                    or wanted.is_unspecified or bound == wanted):
                inodes.add(fields[9])
    inodes.discard("0")
    if not inodes:
        return None
    targets = {f"socket:[{inode}]" for inode in inodes}
    holders: list[int] = []
    with contextlib.suppress(OSError):
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                for fd in (entry / "fd").iterdir():
                    with contextlib.suppress(OSError):
                        if os.readlink(fd) in targets:
                            holders.append(int(entry.name))
                            break
    if not holders:
        return None
    # Processes sharing one socket (a supervisor and its workers): name the one that started
    # the others.
    held = set(holders)
    pid = min((p for p in holders if _parent(proc, p) not in held), default=min(holders))
    return _name(proc, pid), pid


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    address = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _proc_address(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address as /proc/net/tcp{,6} writes it: 32-bit words in the host's byte order."""
    try:
        raw = bytes.fromhex(hex_address)
        words = [raw[i:i + 4] for i in range(0, len(raw), 4)]
        if sys.byteorder == "little":
            words = [w[::-1] for w in words]
        packed = b"".join(words)
        return _address(str(ipaddress.ip_address(packed)))
    except ValueError:
        return None


def _parent(proc: Path, pid: int) -> int | None:
    try:
        stat = (proc / str(pid) / "stat").read_text(encoding="utf-8", errors="replace")
        return int(stat.rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _name(proc: Path, pid: int) -> str:
    """`schoolgate` for a gateway (whatever Python runs it), else the program's own name."""
    try:
        argv = (proc / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        argv = []
    words = [os.path.basename(a.decode("utf-8", "replace")) for a in argv[:4]]
    if any(w == "schoolgate" or w.startswith("schoolgate.") for w in words) and "run" in words:
        return "schoolgate"
    try:
        return (proc / str(pid) / "comm").read_text(encoding="utf-8").strip() or "a program"
    except OSError:
        return words[0] if words and words[0] else "a program"

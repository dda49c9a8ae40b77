"""The gateway's listening sockets: SO_REUSEADDR, never SO_REUSEPORT, and a port that cannot be
listened on refused with one line in Schoolgate's terms: the address and what it is for, who holds
it when the system says, and the config key or option to change."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from schoolgate.config.model import Address
from schoolgate.gateway import ports
from schoolgate.gateway.ports import METRICS, PROXY, PUSH, ListenError, bind_listening, port_holder

CONFIG = Path("/etc/schoolgate/schoolgate.yaml")
linux_proc = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads /proc (Linux)")


def listening(host: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket()
    sock.bind((host, 0))
    sock.listen()
    return sock


def own_name() -> str:
    """This process's name as the system gives it (the holder the messages name)."""
    return Path("/proc/self/comm").read_text(encoding="utf-8").strip()


@pytest.fixture
def other_holder() -> Iterator[tuple[int, str, int]]:
    """Another process listening on a port: (port, its name as the system gives it, pid)."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import socket, sys, time; s = socket.socket(); "
         "s.bind(('127.0.0.1', 0)); s.listen(); print(s.getsockname()[1], flush=True); "
         "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        name = Path(f"/proc/{child.pid}/comm").read_text(encoding="utf-8").strip()
        yield port, name, child.pid
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()


def test_the_socket_never_shares_its_port_and_is_inheritable_only_when_asked():
    sock = bind_listening(Address("127.0.0.1", 0), PROXY, inheritable=True)
    other = bind_listening(Address("127.0.0.1", 0), METRICS)
    try:
        assert sock.get_inheritable() and not other.get_inheritable()
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        assert not sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
    finally:
        sock.close()
        other.close()


@linux_proc
@pytest.mark.parametrize(("listener", "advice"), [
    (PROXY, "choose another port: listen.port in /etc/schoolgate/schoolgate.yaml, or --listen "
            "HOST:PORT."),
    (METRICS, "choose another port: metrics.port in /etc/schoolgate/schoolgate.yaml, or "
              "--metrics HOST:PORT."),
    # The push API has no `schoolgate run` option.
    (PUSH, "choose another port: identity.push.listen.port in /etc/schoolgate/schoolgate.yaml."),
])
def test_a_busy_port_names_what_it_was_for_who_holds_it_and_what_to_change(
        other_holder, listener, advice):
    port, name, pid = other_holder
    with pytest.raises(ListenError) as e:
        bind_listening(Address("127.0.0.1", port), listener, CONFIG)
    assert str(e.value) == (
        f"cannot listen on 127.0.0.1:{port} for {listener.what}: address already in use by "
        f"{name} (pid {pid}). Stop that program, or {advice}")
    assert "--mode" not in str(e.value)


def test_when_the_system_does_not_say_who_holds_the_port_the_message_still_says_what_to_do(
        monkeypatch):
    monkeypatch.setattr(ports, "port_holder", lambda port, host: None)
    held = listening()
    port = held.getsockname()[1]
    try:
        with pytest.raises(ListenError) as e:
            bind_listening(Address("127.0.0.1", port), PROXY)
    finally:
        held.close()
    assert str(e.value) == (
        f"cannot listen on 127.0.0.1:{port} for the proxy: address already in use (is another "
        "schoolgate running?). Stop that program, or choose another port: listen.port in the "
        "config, or --listen HOST:PORT.")


def test_an_address_that_is_not_this_machines_says_which_keys_to_change():
    with pytest.raises(ListenError) as e:
        bind_listening(Address("192.0.2.1", 0), METRICS, CONFIG)  # TEST-NET-1
    assert str(e.value) == (
        "cannot listen on 192.0.2.1:0 for the metrics endpoint: cannot assign requested address. "
        "Choose another address: metrics.host and metrics.port in "
        "/etc/schoolgate/schoolgate.yaml, or --metrics HOST:PORT.")


# -- who holds a port -----------------------------------------------------------------------


@linux_proc
def test_the_holder_is_found_only_where_a_bind_would_clash():
    held = listening("127.0.0.1")
    port = held.getsockname()[1]
    try:
        me = (own_name(), os.getpid())
        assert port_holder(port, "127.0.0.1") == me
        assert port_holder(port, "0.0.0.0") == me  # every interface includes 127.0.0.1
        assert port_holder(port, "") == me
        assert port_holder(port, "127.0.0.2") is None  # another address: no clash
    finally:
        held.close()
    assert port_holder(port, "127.0.0.1") is None  # nothing listens there now


@linux_proc
def test_processes_sharing_one_socket_are_named_by_the_one_that_started_the_others():
    # As `schoolgate run --workers N`: the supervisor's socket, inherited by its workers.
    held = listening()
    port = held.getsockname()[1]
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                             pass_fds=(held.fileno(),))
    try:
        assert port_holder(port, "127.0.0.1") == (own_name(), os.getpid())
    finally:
        child.kill()
        child.wait()
        held.close()


def fake_proc(tmp_path: Path, argv: list[str], comm: str, port: int = 8080,
              inode: str = "4242", pid: int = 77) -> Path:
    proc = tmp_path / "proc"
    (proc / "net").mkdir(parents=True)
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  " \
             "timeout inode\n"
    local = f"{socket.htonl(0x7F000001):08X}:{port:04X}" if sys.byteorder == "little" else \
        f"7F000001:{port:04X}"
    (proc / "net" / "tcp").write_text(
        header + f"   0: {local} 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0 "
                 f"       0 {inode} 1 0000000000000000 100 0 0 10 0\n", encoding="ascii")
    fd = proc / str(pid) / "fd"
    fd.mkdir(parents=True)
    (fd / "3").symlink_to(f"socket:[{inode}]")
    (proc / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (proc / str(pid) / "comm").write_text(comm + "\n", encoding="utf-8")
    (proc / str(pid) / "stat").write_text(f"{pid} ({comm}) S 1 {pid} {pid}\n", encoding="utf-8")
    return proc


@pytest.mark.parametrize(("argv", "comm", "name"), [
    # A gateway is named as one, however its Python was started.
    (["/opt/sg/bin/python3", "/opt/sg/bin/schoolgate", "run", "--config", "x.yaml"], "python3",
     "schoolgate"),
    (["python3", "-m", "schoolgate.cli", "run"], "python3", "schoolgate"),
    # `schoolgate why` holds no port; anything else by its own name.
    (["/usr/sbin/nginx", "-g", "daemon off;"], "nginx", "nginx"),
    (["/opt/sg/bin/python3", "/opt/sg/bin/schoolgate", "why", "x"], "python3", "python3"),
])
def test_the_holder_is_named_by_its_program(tmp_path, argv, comm, name):
    proc = fake_proc(tmp_path, argv, comm)
    assert port_holder(8080, "127.0.0.1", proc=proc) == (name, 77)
    assert port_holder(8081, "127.0.0.1", proc=proc) is None


def test_without_proc_nobody_is_named(tmp_path):
    assert port_holder(8080, "127.0.0.1", proc=tmp_path / "nothing") is None


@linux_proc
def test_two_of_the_gateways_own_ports_the_same_is_said_as_such():
    # `--listen 127.0.0.1:9000 --metrics 127.0.0.1:9000`: the holder is this very process.
    proxy = bind_listening(Address("127.0.0.1", 0), PROXY, CONFIG)
    port = proxy.getsockname()[1]
    try:
        with pytest.raises(ListenError) as e:
            bind_listening(Address("127.0.0.1", port), METRICS, CONFIG)
    finally:
        proxy.close()
    assert str(e.value) == (
        f"cannot listen on 127.0.0.1:{port} for the metrics endpoint: this gateway already "
        "listens there for another purpose. Choose another port: metrics.port in "
        "/etc/schoolgate/schoolgate.yaml, or --metrics HOST:PORT.")

"""`schoolgate` for the group-policy, identity, TLS and emergency-block end-to-end tests: chosen
host names reach the test origin, and the clock schedules are read against is the test's to set.

Run as ``python policy_gateway.py run --config CONFIG ...``; it takes the same arguments as
`schoolgate`. The test writes a sidecar file, ``CONFIG.e2e.json``, beside the config:

    {"resolve": ["www.google.com", ...], "clock_file": "/tmp/.../clock"}

Test-only changes, made before the gateway starts and nowhere else:

- Every `*.test` name, and every name in "resolve", resolves to 127.0.0.1, where the test origin
  listens: an allowed request really arrives there, and a blocked one that leaked would be counted.
- `schoolgate.policy.now` (the clock schedules are checked against, looked up at each decision)
  reads the Unix time written in "clock_file" while that file exists, else the real time. The file
  is read again whenever it is replaced, so the next request after a change is decided by it.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

from schoolgate import cli, policy


def _sidecar(argv: list[str]) -> dict:
    config = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--config"), None)
    if config is None:
        return {}
    path = Path(config + ".e2e.json")
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


SETTINGS = _sidecar(sys.argv[1:])
RESOLVE = frozenset(name.lower() for name in SETTINGS.get("resolve", ()))
CLOCK_FILE = SETTINGS.get("clock_file")

_getaddrinfo = socket.getaddrinfo


def getaddrinfo(host, *args, **kwargs):
    name = host.decode("ascii", "replace") if isinstance(host, bytes) else host
    if isinstance(name, str):
        name = name.rstrip(".").lower()
        if name.endswith(".test") or name in RESOLVE:
            host = "127.0.0.1"
    return _getaddrinfo(host, *args, **kwargs)


class FileClock:
    """The time in `path` (Unix seconds, as text) while it exists, else the real time. The file is
    re-read only when it is a new file (tests replace it atomically) or its size or mtime moved."""

    def __init__(self, path: str):
        self.path = path
        self._seen: tuple[int, int, int] | None = None
        self._value: float | None = None

    def __call__(self) -> float:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._seen = self._value = None
            return time.time()
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if key != self._seen:
            self._value = float(Path(self.path).read_text(encoding="ascii").strip())
            self._seen = key
        assert self._value is not None
        return self._value


socket.getaddrinfo = getaddrinfo
if CLOCK_FILE:
    policy.now = FileClock(CLOCK_FILE)

if __name__ == "__main__":
    sys.exit(cli.main(sys.argv[1:]))

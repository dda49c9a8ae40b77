"""benchmarks/lossless.py, run short: under closed-loop load through the real gateway, every
request answered has its event stored, with the gateway stopped after the load and with SIGTERM
in the middle of it; and the SIGKILL row is measured (what a crash can lose is the README's
stated bound, not a failure). The benchmark itself runs it for 60 s a run in `make bench`."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_no_answered_request_loses_its_event_under_load_or_at_sigterm():
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "lossless.py"), "--seconds", "4",
         "--clients", "8"],
        capture_output=True, text=True, timeout=300, check=False)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    rows = {m[1]: [int(x) for x in m[2].split()] for m in
            re.finditer(r"^(steady|sigterm|sigkill)\s+\d+\s+([\d\s-]+)$", out, re.M)}
    assert set(rows) == {"steady", "sigterm", "sigkill"}, out
    for kind in ("steady", "sigterm"):
        sent, answered, stored, missing, code = rows[kind]
        assert answered > 100, out  # the load really ran through the gateway
        assert missing == 0 and stored >= answered, out
        assert code == 0, out  # a clean stop
    assert rows["sigkill"][4] == -9, out

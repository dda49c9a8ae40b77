"""`make bench-proxy` works: one short run of the real harness (every target, every mix, one
second a cell, a 20,000-domain list) serves requests through every target without errors, the
blocked mix gets about 10 % block pages from Schoolgate and from e2guardian, the HTTPS load
generator completes tunnels of K requests, and the table has a row for every cell. Nothing here
looks at a timing figure: they are for the harness to print, not for a test to judge.

Needs root (a private network namespace) and nginx-light, wrk, e2guardian, gcc and libssl-dev,
which .ci/run installs; without them the test fails and says what is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
HARNESS = ROOT / "benchmarks" / "bench_proxy.py"
sys.path.insert(0, str(HARNESS.parent))

import bench_proxy  # noqa: E402

TARGETS = ["direct", "mitmdump", "e2guardian", "schoolgate", "schoolgate-w2",
           "schoolgate-noscan"]
CONCURRENCY = 8


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> dict:
    if os.geteuid() != 0:
        pytest.fail("bench-proxy needs root for its network namespace (CI runs .ci/run as root)")
    missing = [n for n, p in bench_proxy.TOOLS.items() if shutil.which(p) is None]
    if missing:
        pytest.fail(f"missing {missing}: apt-get install {bench_proxy.APT} (.ci/run does)")
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    env = {k: v for k, v in os.environ.items()
           if "proxy" not in k.lower() and not k.startswith("BENCH_PROXY")}
    r = subprocess.run(
        [sys.executable, str(HARNESS), "--seconds", "1", "--runs", "1", "--warmup", "0",
         "--domains", "20000", "--concurrency", str(CONCURRENCY), "--workers", "1,2",
         "--json", str(out)],
        capture_output=True, text=True, timeout=240, env=env, check=False)
    assert r.returncode == 0, f"harness failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    doc = json.loads(out.read_text())
    doc["stdout"] = r.stdout
    doc["cells"] = {(c["target"], c["mix"]): c for c in doc["summary"]}
    return doc


def ran(bench: dict) -> dict:
    return {k: c for k, c in bench["cells"].items() if "skipped" not in c}


def test_every_cell_is_in_the_table(bench):
    lines = bench["stdout"].splitlines()
    for target in TARGETS:
        for mix in bench_proxy.MIXES:
            if (target, mix.name) not in bench["cells"]:
                pytest.fail(f"no result for {target} {mix.name}")
            assert any(line.split()[:2] == [mix.name, target] for line in lines), \
                f"no table row for {target} {mix.name}:\n{bench['stdout']}"


def test_only_unsupported_features_are_skipped(bench):
    features = bench["features"]
    for (target, mix), cell in bench["cells"].items():
        selective = mix.startswith("sel-")
        if target == "schoolgate-w2" and not features["workers"]:
            expect = True
        elif target == "schoolgate-noscan":
            expect = not mix.startswith("http-html")  # scanning off: only pages tell
            if expect:
                assert cell["skipped"] == bench_proxy.NO_PAGES, (target, mix, cell)
                continue
        elif target.startswith("schoolgate") and selective and not features["selective"]:
            expect = True
        else:
            expect = target == "direct" and mix == "http-blocked"  # nothing to block
        assert ("skipped" in cell) == expect, (target, mix, cell)
        if "skipped" in cell and target.startswith("schoolgate"):
            assert cell["skipped"] == bench_proxy.NA


def test_every_target_served_requests_without_errors(bench):
    for (target, mix), cell in ran(bench).items():
        assert cell["requests"] > 0, f"{target} {mix} served nothing"
        assert cell["errors"] == 0, (target, mix, [
            r["error_detail"] for r in bench["runs"]
            if r.get("target") == target and r.get("mix") == mix])
        if target != "direct":
            assert cell["processes"] >= 1 and cell["rss_bytes"] > 0, (target, mix)
            assert cell["target_cpu_s"] > 0, (target, mix)


def test_blocked_mix_gets_ten_percent_block_pages(bench):
    cells = bench["cells"]
    for target in ("schoolgate", "e2guardian"):
        share = cells[(target, "http-blocked")]["blocked_share"]
        assert 0.06 <= share <= 0.14, f"{target} blocked {share:.1%} of the blocked mix"
    # Bare mitmdump filters nothing: the same requests all reach the origin.
    assert cells[("mitmdump", "http-blocked")]["blocked"] == 0
    for (target, mix), cell in ran(bench).items():
        if mix != "http-blocked":
            assert cell["blocked"] == 0, (target, mix)


def test_https_tunnels_carry_k_requests_each(bench):
    runs = [r for r in bench["runs"] if "skipped" not in r and "tunnels_done" in r]
    assert {r["mix"] for r in runs} == {m.name for m in bench_proxy.MIXES if m.https}
    for r in runs:
        k = r["per_tunnel"]
        assert k == (10 if r["mix"].endswith("-10") else 1)
        assert r["tunnels_done"] > 0, r
        # Every finished tunnel carried exactly K; only tunnels cut off by the end of the run
        # (at most one per connection) carried fewer.
        assert r["tunnels_done"] * k <= r["requests"], r
        assert r["requests"] <= (r["tunnels_done"] + r["tunnels_partial"]) * k, r
        assert r["tunnels_partial"] <= CONCURRENCY, r
        assert r["conn_rate"] > 0

"""The first thing a newcomer does: start the gateway with the example config and paste the curl
command its banner prints. It must show the block page (with the real curl, as they would)."""

from __future__ import annotations

import html
import os
import shlex
import shutil
import subprocess

import pytest
import yaml

from .harness import ROOT, TIMEOUT, clean_env, running_gateway

pytestmark = pytest.mark.e2e

EXAMPLE = ROOT / "config" / "schoolgate.yaml"


@pytest.fixture(scope="module")
def example_gateway(tmp_path_factory):
    """The example config as shipped, except that its data and CA live in a temporary folder."""
    tmp = tmp_path_factory.mktemp("example")
    doc = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    for category in doc["categories"].values():
        category["lists"] = [str((EXAMPLE.parent / p).resolve()) for p in category["lists"]]
    for lst in doc.get("illegal_lists", {}).values():
        lst["source"] = str((EXAMPLE.parent / lst["source"]).resolve())
    doc["tls"]["do_not_decrypt"] = [str((EXAMPLE.parent / p).resolve())
                                    for p in doc["tls"]["do_not_decrypt"]]
    for key in ("ip_map", "devices", "user_groups"):
        doc["identity"][key] = str((EXAMPLE.parent / doc["identity"][key]).resolve())
    doc["keywords"]["library"] = str((EXAMPLE.parent / doc["keywords"]["library"]).resolve())
    doc["alerts"]["routing"] = str((EXAMPLE.parent / doc["alerts"]["routing"]).resolve())
    doc["templates"] = str((EXAMPLE.parent / doc["templates"]).resolve())
    doc["reports"]["out_dir"] = str(tmp / "reports")
    doc["data_dir"], doc["ca_dir"] = str(tmp / "data"), str(tmp / "ca")
    config = tmp / "schoolgate.yaml"
    config.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    with running_gateway("example", config) as gw:
        yield gw, doc


@pytest.fixture(scope="module")
def curl() -> str:
    path = shutil.which("curl")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("curl is not installed; CI must have it to test the printed command")
        pytest.skip("curl is not installed")
    return path


@pytest.mark.parametrize("which", [0, 1], ids=["http", "https"])
def test_printed_curl_command_shows_the_block_page(which, example_gateway, curl):
    gw, doc = example_gateway
    line = gw.curl_lines(2)[which]
    argv = shlex.split(line)
    assert argv[:3] == ["curl", "-x", f"http://127.0.0.1:{gw.proxy_port}"], line
    url = argv[-1]
    assert url.startswith(("http://www.", "https://www.")) and url.endswith("/"), line
    if which == 1:
        assert argv[3:5] == ["--cacert", os.path.join(doc["ca_dir"], "mitmproxy-ca-cert.pem")], line

    done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, env=clean_env())

    assert done.returncode == 0, done.stderr
    page = done.stdout
    assert "This page is blocked" in page
    # 127.0.0.1 is in none of the example's subnets, so the default group's policy applies.
    default = doc["groups"][doc["default_group"]]
    assert f"<dd>{html.escape(default['title'])}</dd>" in page
    assert f"<dd>{html.escape(url.split('/')[2])}</dd>" in page
    titles = [doc["categories"][c]["title"] for c in default["blocked_categories"]]
    assert any(f"<dd>{html.escape(t)}</dd>" in page for t in titles), titles
    assert f"Internet use on the {doc['school']['name']} network is monitored" in page

"""Fixtures for the end-to-end tests: one origin and one gateway for the whole session (each test
tells its own requests apart by a unique marker in the URL), and a client that trusts only
Schoolgate's CA. When a test fails, the output of every gateway alive during it is attached to
the report."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from .harness import (
    ORIGIN_ERRORS,
    GatewayClient,
    GatewayProcess,
    GatewaySetup,
    Origin,
    OriginPKI,
    make_pki,
    running_gateway,
    write_config,
)

_STARTED = pytest.StashKey[float]()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> OriginPKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def origin(pki: OriginPKI) -> Iterator[Origin]:
    server = Origin(pki)
    yield server
    server.close()


@pytest.fixture(scope="session")
def setup(tmp_path_factory: pytest.TempPathFactory, pki: OriginPKI) -> GatewaySetup:
    """The session gateway's config: events written within 50 ms."""
    return write_config(tmp_path_factory.mktemp("gateway"), upstream_ca=pki.ca_cert)


@pytest.fixture(scope="session")
def gateway(setup: GatewaySetup, origin: Origin) -> Iterator[GatewayProcess]:
    assert not setup.ca_dir.exists(), "the CA must be created by the gateway's first start"
    with running_gateway("session", setup.config) as gw:
        yield gw


@pytest.fixture(scope="session")
def client(gateway: GatewayProcess, setup: GatewaySetup) -> GatewayClient:
    assert gateway.proxy_port is not None
    return GatewayClient(gateway.proxy_port, setup.schoolgate_ca)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    item.stash[_STARTED] = time.monotonic()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.failed:
        since = item.stash.get(_STARTED, 0.0)
        for gw in GatewayProcess.launched:
            if gw.stopped_at is None or gw.stopped_at >= since:
                report.sections.append(
                    (f"gateway {gw.name} (pid {gw.pid}, exit status {gw.returncode})", gw.tail())
                )
        if ORIGIN_ERRORS:
            report.sections.append(("origin server errors", "\n".join(ORIGIN_ERRORS[-50:])))
    return report

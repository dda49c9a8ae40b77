"""The one composition root: build the gateway's parts from a config and put its addons in order.
`schoolgate run` (which also makes its own mitmproxy master) and `mitmdump -s proxy/entry.py`
(whose master already exists) both start Schoolgate through here, so neither can skip a step
that a hard rule depends on, such as loading the illegal lists before the first request.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import stat
from pathlib import Path

from mitmproxy import ctx

from ..config.model import Config
from ..sources.lists import cache_path
from . import ca
from .addons.check import CheckMode
from .addons.classify import Classify
from .addons.enforce import Enforce
from .addons.error_pages import ErrorPages
from .addons.identify import Identify
from .addons.metrics import Metrics
from .addons.problem_reports import ProblemReports
from .addons.record import Record
from .addons.request_heads import RequestHeads
from .addons.scan import ScanPages
from .addons.tls import TlsDecisions
from .master import drain
from .service import Gateway, StartupError
from .workers.link import WorkerLink

__all__ = ["Lifecycle", "announce_creation", "build", "ensure_ca", "ordered", "proxy_options",
           "to_create"]

log = logging.getLogger("schoolgate")


def to_create(config: Config) -> list[str]:
    """What starting with `config` will create because it is not there yet, in words: on a
    first start the CA, the event store, the list cache and the illegal lists' last good
    copies; later, whichever of them was deleted."""
    items = []
    if not (config.ca_dir / f"{ca.BASENAME}-ca.pem").exists():
        items.append(f"the interception CA in {config.ca_dir} (install "
                     f"{config.ca_cert_path.name} on managed devices)")
    if not config.database_path.exists():
        items.append(f"the event store {config.database_path}")
    if not cache_path(config).exists():
        items.append(f"the list cache {cache_path(config)}")
    if config.illegal_lists and not (config.data_dir / "illegal").exists():
        items.append(f"a last good copy of each illegal list in {config.data_dir / 'illegal'}")
    return items


def announce_creation(config: Config) -> None:
    """Say once, in one line, what this start creates (nothing when it creates nothing). The
    parts that create each thing stay quiet about it: a technician reads one line that says
    what is new, not a missing file or a list of migrations that looks like a fault."""
    items = to_create(config)
    if not items:
        return
    first = not config.database_path.exists()
    listed = items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
    log.info("%s%s", "first start: creating " if first else "creating ", listed)


def ensure_ca(config: Config) -> Path:
    """Create the interception CA on first start; return the public certificate's path.
    `announce_creation` says so beforehand.

    The CA is named after the school so a pupil inspecting a certificate sees who issued it;
    its key is ECDSA P-256 (see `gateway.ca` for why), and the key files get mode 0600.
    """
    key_file = config.ca_dir / f"{ca.BASENAME}-ca.pem"
    if not key_file.exists():
        try:
            ca.create_ca(config.ca_dir, organization="Schoolgate",
                         common_name=f"Schoolgate CA - {config.school_name}"[:64])
        except OSError as e:
            raise StartupError(f"cannot create the CA in {config.ca_dir}: {e}") from None
    mode = stat.S_IMODE(key_file.stat().st_mode)
    if mode & 0o077:
        log.warning(
            "the CA private key %s can be read by other users (mode %o): run chmod 600 on it",
            key_file, mode,
        )
    return config.ca_cert_path


def proxy_options(config: Config) -> dict[str, object]:
    """The mitmproxy options Schoolgate needs, whoever made the master: the school's CA, and
    never a connection to a server before the request is decided."""
    options: dict[str, object] = {
        "confdir": str(config.ca_dir),
        # Lazy: never open a connection to a blocked site's server, not even the TLS handshake
        # mitmproxy would otherwise make to copy its certificate details.
        "connection_strategy": "lazy",
    }
    if config.upstream_trusted_ca:
        options["ssl_verify_upstream_trusted_ca"] = str(config.upstream_trusted_ca)
    return options


def build(config: Config, link: WorkerLink | None = None) -> Gateway:
    """The gateway for `config`, ready for its first request (blocking): the CA made, the lists
    and rules built, and every illegal list loaded from its last good copy or its source.
    Raises StartupError (or ConfigError) saying what to fix; nothing is served then. With
    `link`, a worker of `schoolgate run` (the supervisor made the CA and the lists' copies, and
    said so)."""
    if link is None:
        announce_creation(config)
    ensure_ca(config)
    gateway = Gateway(config, link=link)
    gateway.log_lists()
    gateway.load_illegal_lists()
    return gateway


def ordered(gateway: Gateway) -> list[object]:
    """The addons in the order they must run."""
    # `schoolgate check`: CheckMode first (it admits check requests and strips their header
    # before anything reads them), its answer right after Enforce (the verdict is known, and
    # nothing has been sent anywhere).
    check = CheckMode(gateway)
    # ProblemReports after Identify (a report is stored with who sent it) and before Classify
    # (the forms are answered on blocked hosts too). ScanPages after check.answer and before
    # Record and Metrics, so a page it blocks is recorded and counted as blocked.
    # Lifecycle last: at shutdown its `done` flushes the event queue after every other addon
    # has finished.
    # ErrorPages has no request hook: from `running` on it answers, in Schoolgate's words,
    # what mitmproxy would answer with its own page (a site that cannot be reached);
    # RequestHeads has none either: from `running` on, a request head mitmproxy refuses only
    # for a host that has a canonical form becomes a flow these addons decide.
    return [check, Identify(gateway), TlsDecisions(gateway), ProblemReports(gateway),
            Classify(gateway), Enforce(gateway), check.answer, ScanPages(gateway), Record(gateway),
            Metrics(gateway),
            ErrorPages(gateway), RequestHeads(), Lifecycle(gateway)]


class Lifecycle:
    """Starts the gateway's background work when the proxy runs and stops it (flushing the event
    queue) when it shuts down; writes the pid file `schoolgate reload`, `allow` and `block`
    signal, and reloads on SIGHUP."""

    def __init__(self, gateway: Gateway):
        self.gateway = gateway
        self.pidfile = gateway.config.data_dir / "schoolgate.pid"

    async def running(self) -> None:
        try:
            await self.gateway.start()
        except StartupError as e:
            # Under `mitmdump -s`: one line saying what to fix, not a traceback, and stop
            # (mitmproxy's ErrorCheck also exits on an error logged while starting).
            log.error("schoolgate: %s", e)
            ctx.master.shutdown()
            return
        # `schoolgate reload` (or `kill -HUP`) rebuilds the rules without a restart.
        asyncio.get_running_loop().add_signal_handler(
            signal.SIGHUP, self.gateway.reloader.request, "SIGHUP")
        if self.gateway.link is not None:
            # The pid file names the supervisor, whose SIGHUP reaches every worker.
            self.gateway.link.ready()
        else:
            self.pidfile.write_text(f"{os.getpid()}\n")

    async def done(self) -> None:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        # Every decision made before the event queue is flushed: no request is decided (and
        # recorded) after the store has closed.
        await drain(ctx.master)
        await self.gateway.stop()
        if self.gateway.link is None:
            self.pidfile.unlink(missing_ok=True)

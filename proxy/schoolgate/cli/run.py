"""`schoolgate run`: start the gateway on its own mitmproxy master. The parts and addons come from
the one bootstrap (`schoolgate.gateway.bootstrap`) that `mitmdump -s proxy/entry.py` uses too;
only this command also makes the master, its options and the start-up banner.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from mitmproxy import ctx, options
from mitmproxy.addons import errorcheck, termlog

from .. import __version__
from ..classify.formats import ListFormat, read_list
from ..config.loader import load_config, parse_address
from ..config.model import Config
from ..gateway import bootstrap
from ..gateway.master import lean_addons, lean_master
from ..gateway.service import Gateway, StartupError
from ..sources.lists import category_sources
from ..store import StoreError

__all__ = ["register"]


def register(sub: argparse._SubParsersAction,
             config_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    run = sub.add_parser("run", help="start the gateway", description="Start the gateway.")
    config_arg(run)
    run.add_argument("--listen", metavar="HOST:PORT", help="override listen.host and listen.port")
    run.add_argument("--metrics", metavar="HOST:PORT",
                     help="override metrics.host and metrics.port")
    run.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.listen:
        config = config.replace(listen=parse_address(args.listen, "--listen"))
    if args.metrics:
        config = config.replace(metrics=parse_address(args.metrics, "--metrics"))
    try:
        return asyncio.run(_run(config))
    except StartupError as e:
        print(f"schoolgate: {e}", file=sys.stderr)
        return 1


async def _run(config: Config) -> int:
    opts = options.Options()
    master = lean_master(opts)
    # Logs go to stderr, leaving stdout for the start-up banner (and journald keeps both).
    terminal_log = termlog.TermLog(out=sys.stderr)
    master.addons.add(terminal_log)
    master.addons.add(*lean_addons())
    logging.getLogger("schoolgate").setLevel(logging.INFO)

    gateway = bootstrap.build(config)
    # mitmproxy's ErrorCheck exits on any error logged during start-up. Add it only now: the
    # bootstrap's problems are StartupErrors with one clear line, not log records.
    master.addons.add(errorcheck.ErrorCheck())
    opts.update(
        listen_host=config.listen.host,
        listen_port=config.listen.port,
        mode=[config.mode],
        termlog_verbosity="info",
        **bootstrap.proxy_options(config),
    )
    master.addons.add(*bootstrap.ordered(gateway), _Announce(config, gateway))

    try:
        await gateway.start()
    except StoreError as e:
        raise StartupError(str(e)) from None
    except OSError as e:
        raise StartupError(f"cannot serve metrics on {config.metrics}: {e.strerror or e}") from None

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Shutdown in stages: mitmproxy stops serving, then `done` runs and the gateway drains
        # the event queue into the store before the process exits.
        loop.add_signal_handler(sig, master.shutdown)
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:
        await master.run()
    finally:
        await gateway.stop()  # no-op when `done` already stopped it
        terminal_log.uninstall()
    return 0


class _Announce:
    """Print where the gateway listens, the CA certificate and a first command to try."""

    def __init__(self, config: Config, gateway: Gateway):
        self.config, self.gateway = config, gateway

    def running(self) -> None:
        proxyserver = ctx.master.addons.get("proxyserver")
        addrs = proxyserver.listen_addrs() if proxyserver else []
        if not addrs:
            return
        host, port = addrs[0][0], addrs[0][1]
        shown = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host  # noqa: S104 - naming a bound address
        proxy = f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"
        ca_cert = self.config.ca_cert_path
        listening = ", ".join(f"{a[0] or '*'}:{a[1]}" for a in addrs)
        lines = [
            "",
            f"Schoolgate {__version__} is filtering.",
            f"  proxy listening on  {listening} ({self.config.mode} mode)",
            f"  metrics             http://{self.gateway.metrics_address}/metrics",
            f"  CA certificate      {ca_cert}",
            f"  event store         {self.config.database_path}",
        ]
        example = _example_blocked_host(self.config)
        if example:
            lines += [
                "",
                "See a block page:",
                f"  curl -x {proxy} http://{example}/",
                f"  curl -x {proxy} --cacert {ca_cert} https://{example}/",
            ]
        lines.append("")
        print("\n".join(lines), flush=True)


def _example_blocked_host(config: Config) -> str | None:
    """A domain from the default group's first blocked category, to show a newcomer a block."""
    blocked = config.groups[config.default_group].blocked_categories
    for source in category_sources(config):
        if source.category not in blocked or source.format not in (None, ListFormat.DOMAINS):
            continue
        entries = read_list(Path(source.path), source.format).block
        if entries:
            return "www." + next(iter(entries))[0]
    return None

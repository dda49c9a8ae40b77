"""`schoolgate run`: start the gateway, a supervisor and `--workers` worker processes (see
`schoolgate.gateway.workers`), each worker on its own mitmproxy master. The parts and addons come
from the one bootstrap (`schoolgate.gateway.bootstrap`) that `mitmdump -s proxy/entry.py` uses
too; only this command also makes the masters, their options and the start-up banner.

`--workers 1` is a supervisor and one worker, the same code path as any other number: one path
tested by every end-to-end test, for about a quarter of a second more at start-up.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from mitmproxy import options
from mitmproxy.addons import errorcheck, termlog
from mitmproxy.master import Master

from .. import __version__
from ..classify.formats import ListFormat, read_list
from ..config.loader import load_config, parse_address
from ..config.model import Config
from ..gateway import bootstrap
from ..gateway.logs import SupervisorLogFormat, WorkerLogFormat
from ..gateway.master import drain, lean_addons, lean_master
from ..gateway.resolver import CachingLoop
from ..gateway.service import StartupError
from ..gateway.workers.channel import wait_for_go
from ..gateway.workers.link import WorkerLink
from ..gateway.workers.supervisor import Supervisor
from ..sources.lists import category_sources
from ..store import StoreError

__all__ = ["register"]

log = logging.getLogger("schoolgate")

DRAIN_SECONDS = 5.0
"""At SIGTERM, how long a worker waits for open client connections to finish (idle keep-alive
connections would wait for ever) before it stops; the supervisor allows it 30."""


def register(sub: argparse._SubParsersAction,
             config_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    run = sub.add_parser("run", help="start the gateway", description="Start the gateway.")
    config_arg(run)
    run.add_argument("--listen", metavar="HOST:PORT", help="override listen.host and listen.port")
    run.add_argument("--metrics", metavar="HOST:PORT",
                     help="override metrics.host and metrics.port")
    run.add_argument("--workers", metavar="N", type=_positive, default=None,
                     help="gateway worker processes sharing the proxy port (default: one per "
                          f"core, here {os.cpu_count() or 1})")
    # Internal, not shown: one worker, started by the supervisor with the sockets it inherits.
    for name in ("--index", "--listen-fd", "--channel-fd"):
        run.add_argument(name, type=int, help=argparse.SUPPRESS)
    run.add_argument("--held", action="store_true", help=argparse.SUPPRESS)
    run.set_defaults(func=cmd_run)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("at least 1")
    return value


def cmd_run(args: argparse.Namespace) -> int:
    if args.channel_fd is not None:
        return cmd_worker(args)
    config = load_config(args.config)
    if args.listen:
        config = config.replace(listen=parse_address(args.listen, "--listen"))
    if args.metrics:
        config = config.replace(metrics=parse_address(args.metrics, "--metrics"))
    workers = args.workers or os.cpu_count() or 1
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SupervisorLogFormat())
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    supervisor = Supervisor(config, workers, worker_command(),
                            announce=lambda s: _announce(config, s))
    try:
        return asyncio.run(supervisor.run())
    except StartupError as e:
        print(f"schoolgate: {e}", file=sys.stderr)
        return 1


def worker_command() -> list[str]:
    """How this program was started, with the `run` command (the supervisor adds the worker's
    options): a worker runs the same code, whether it came from the console script,
    `python -m schoolgate.cli` or a wrapper script."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    if spec is not None and spec.name:
        return [sys.executable, "-m", spec.name.removesuffix(".__main__"), "run"]
    return [sys.executable, sys.argv[0], "run"]


def cmd_worker(args: argparse.Namespace) -> int:
    """One worker, with the config (and `--listen`, `--metrics`) its supervisor was given."""
    channel = socket.socket(fileno=args.channel_fd)
    # Held: imported already (the slow part), but reading the config only once worker 0 has.
    if args.held and not wait_for_go(channel):
        return 0  # the gateway stopped before this worker was needed
    config = load_config(args.config)
    if args.listen:
        config = config.replace(listen=parse_address(args.listen, "--listen"))
    if args.metrics:
        config = config.replace(metrics=parse_address(args.metrics, "--metrics"))
    listen = socket.socket(fileno=args.listen_fd)
    link = WorkerLink(args.index, channel, config.events)
    try:
        # The workers serve the traffic: their loop keeps host-name lookups (gateway/resolver.py).
        return asyncio.run(_run_worker(config, listen, link),
                           loop_factory=functools.partial(
                               CachingLoop, connect_timeout=config.upstream_connect_timeout))
    except StartupError as e:
        print(f"schoolgate: worker {args.index}: {e}", file=sys.stderr)
        return 1


async def _run_worker(config: Config, listen: socket.socket, link: WorkerLink) -> int:
    opts = options.Options()
    master = lean_master(opts)
    # Logs go to stderr, leaving stdout for the supervisor's start-up banner.
    terminal_log = termlog.TermLog(out=sys.stderr)
    terminal_log.logger.formatter = WorkerLogFormat(terminal_log.logger.has_vt_codes)
    master.addons.add(terminal_log)
    master.addons.add(*lean_addons(listen))
    logging.getLogger("schoolgate").setLevel(logging.INFO)

    gateway = bootstrap.build(config, link)
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
    master.addons.add(*bootstrap.ordered(gateway))

    try:
        await gateway.start()
    except StoreError as e:
        raise StartupError(str(e)) from None
    link.on_lost = master.shutdown
    stopping: list[asyncio.Task[None]] = []
    loop = asyncio.get_running_loop()

    def stop() -> None:
        if stopping:  # a second signal: stop now
            master.shutdown()
        else:
            stopping.append(loop.create_task(_drain_then_stop(master)))

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:
        await master.run()
    finally:
        await gateway.stop()  # no-op when `done` already stopped it
        terminal_log.uninstall()
    return 0


async def _drain_then_stop(master: Master) -> None:
    """Shutdown in stages: stop accepting (the other workers, or the kernel's backlog, take new
    connections), let the requests in flight finish so each one's event is queued, then stop
    mitmproxy; its `done` hooks send every queued event to the supervisor before the exit."""
    await drain(master, grace=DRAIN_SECONDS)
    master.shutdown()


def _announce(config: Config, supervisor: Supervisor) -> None:
    """Print where the gateway listens, the CA certificate and a first command to try: once,
    from the supervisor, when every worker accepts connections."""
    host, port = supervisor.address
    shown = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host  # noqa: S104 - naming a bound address
    proxy = f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"
    ca_cert = config.ca_cert_path
    workers = f"{supervisor.count} process{'es' if supervisor.count > 1 else ''}"
    lines = [
        "",
        f"Schoolgate {__version__} is filtering.",
        f"  proxy listening on  {host or '*'}:{port} ({config.mode} mode)",
        f"  workers             {workers} sharing the port",
        f"  metrics             http://{supervisor.metrics_address}/metrics",
        f"  CA certificate      {ca_cert}",
        f"  event store         {config.database_path}",
    ]
    example = _example_blocked_host(config)
    if example:
        lines += [
            "",
            "See a block page:",
            f"  curl -x {proxy} http://{example}/",
            f"  curl -x {proxy} --cacert {ca_cert} https://{example}/",
        ]
    lines.append("")
    try:
        print("\n".join(lines), flush=True)
    except OSError:  # `schoolgate run | head -3` after head exits: nobody reads it any more
        # Standard output goes to /dev/null from now on (nothing later writes there, and the
        # interpreter's last flush cannot fail); the gateway goes on filtering.
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
        log.info("standard output is closed: the start-up banner was not shown; the gateway "
                 "goes on filtering")


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

"""The `schoolgate` command: run the gateway, explain a verdict, find an event by reference.

Exit status: 0 success; 1 a runtime failure (or, for `why`, a URL that could not be read);
2 a configuration or usage error, printed as one line per problem and never as a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import stat
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from . import __version__
from .config import Config, ConfigError, load_config, parse_address
from .gateway import StartupError

DEFAULT_CONFIG = "config/schoolgate.yaml"
log = logging.getLogger("schoolgate")

# The keys of `why --json`, in order. Documented in README.md (a test checks) and stable: later
# versions add keys, never rename or remove them.
WHY_KEYS = (
    "url",
    "normalised_url",
    "host",
    "ip",
    "group",
    "group_source",
    "action",
    "category",
    "categories",
    "matched_list",
    "matched_entry",
    "matched_line",
    "rule",
    "error",
    "canonical_url",
    "lookup_expressions",
    "illegal_list",
    "reason",
    "matches",
    "keywords",
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except ConfigError as e:
        for problem in e.problems:
            print(f"schoolgate: {problem}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="schoolgate",
        description="Web filtering and monitoring gateway for schools.",
    )
    p.add_argument("--version", action="version", version=f"schoolgate {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def config_arg(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--config",
            metavar="PATH",
            default=os.environ.get("SCHOOLGATE_CONFIG", DEFAULT_CONFIG),
            help=f"configuration file (default: $SCHOOLGATE_CONFIG or {DEFAULT_CONFIG})",
        )

    run = sub.add_parser("run", help="start the gateway", description="Start the gateway.")
    config_arg(run)
    run.add_argument("--listen", metavar="HOST:PORT", help="override listen.host and listen.port")
    run.add_argument("--metrics", metavar="HOST:PORT", help="override metrics.host and metrics.port")
    run.set_defaults(func=cmd_run)

    why = sub.add_parser(
        "why",
        help="explain the verdict for URLs without a running gateway",
        description="Print the verdict each URL would get: the normalised URL, the group, the "
        "matched list and category, and the action. Give URLs as arguments, or - to read them "
        "one per line from standard input.",
    )
    why.add_argument("urls", nargs="+", metavar="URL")
    why.add_argument("--group", help="decide for this group")
    why.add_argument("--ip", help="decide for the group this client IP belongs to")
    why.add_argument("--json", action="store_true", help="one JSON object per URL per line")
    config_arg(why)
    why.set_defaults(func=cmd_why)

    reload = sub.add_parser(
        "reload",
        help="make the running gateway re-read its config and lists",
        description="Ask the running gateway (the one using this config's data_dir) to re-read "
        "the config file and every list, and print the outcome. The running rules stay in force "
        "if anything is wrong; the message names the file and line.",
    )
    config_arg(reload)
    reload.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                        help="how long to wait for the outcome (default 60)")
    reload.set_defaults(func=cmd_reload)

    event = sub.add_parser(
        "event",
        help="show the stored event(s) for a block page's reference",
        description="Find the event a block page's reference ID points to.",
    )
    event.add_argument("reference", help="the reference on the block page, e.g. 7KQ2M-9XDPA")
    event.add_argument("--json", action="store_true", help="print JSON, one object per line")
    config_arg(event)
    event.set_defaults(func=cmd_event)
    return p


# ---------------------------------------------------------------------------------------------
# why


def cmd_why(args: argparse.Namespace) -> int:
    from .classify import Classifier, URLError, normalise_url
    from .identify import Identity, SubnetGroups
    from .policy import Policy

    logging.basicConfig(level=logging.WARNING, format="schoolgate: %(message)s")
    config = load_config(args.config)
    if args.group is not None and args.group not in config.groups:
        raise ConfigError(
            [f"--group: no group {args.group!r}; defined groups: {', '.join(config.groups)}"]
        )
    groups = SubnetGroups(config)
    if args.ip is not None:
        try:
            identity = groups.identify(args.ip)
        except ValueError:
            raise ConfigError([f"--ip: {args.ip!r} is not an IP address"]) from None
        if args.group is not None:
            identity = Identity(ip=identity.ip, group=args.group, source="override")
    elif args.group is not None:
        identity = Identity(ip="", group=args.group, source="override")
    else:
        identity = Identity(ip="", group=config.default_group, source="default")

    from .classify.illegal import IllegalList, IllegalLists
    from .gateway import _spec, build_rules

    # Illegal lists: the gateway's last good copy (digests only) if there is one, else a local
    # source file. A URL source is never fetched here: `why` must answer at once.
    lists = []
    for spec in map(_spec, config.illegal_lists.values()):
        lst = IllegalList(spec, config.data_dir / "illegal")
        if not lst.restore() and not spec.source.startswith(("http://", "https://")):
            lst.refresh()
        if lst.entries == 0:
            log.warning("illegal list %s is not loaded here; its matches are not shown", spec.name)
        lists.append(lst)
    rules = build_rules(config, IllegalLists(lists))
    classifier, policy = rules.classifier, rules.policy
    for problem in classifier.problems:
        log.warning("%s", problem)
    status = 0
    for url in _urls(args.urls):
        result: dict = dict.fromkeys(WHY_KEYS)
        result.update(url=url, ip=identity.ip or None, group=identity.group,
                      group_source=identity.source, categories=[], matches=[], keywords=[])
        try:
            normalised, _ = normalise_url(url)
            classification = classifier.classify(url)
        except URLError as e:
            result["error"] = str(e)
            status = 1
        else:
            verdict = policy.decide(identity, classification)
            result.update(
                normalised_url=normalised,
                canonical_url=classification.canonical_url,
                lookup_expressions=list(classification.expressions),
                illegal_list=verdict.illegal_list,
                reason=verdict.reason,
                host=classification.host,
                action=verdict.action,
                category=verdict.category,
                categories=list(verdict.categories),
                matched_list=verdict.matched_list,
                matched_entry=verdict.matched_entry,
                matched_line=verdict.matched_line,
                rule=verdict.rule,
                # Every entry, not only the deciding one: a technician tuning lists needs to see
                # that a host is in three lists before allowing it in one. Illegal lists are not
                # here: their entries are never shown (`illegal_list` names the list only).
                matches=[
                    {"category": m.category, "kind": m.kind, "entry": m.entry,
                     "list": m.list_path, "line": m.line,
                     "blocked_for_group": m.category in policy.blocked_categories(identity.group)}
                    for m in classification.matches
                ],
                keywords=[
                    {"phrase": k.phrase.text, "theme": k.phrase.theme,
                     "severity": k.phrase.severity, "matched": k.text}
                    for k in classification.keywords
                ],
            )
        if args.json:
            print(json.dumps(result, ensure_ascii=False), flush=True)
        else:
            _print_why(result, config)
    return status


def _urls(items: Iterable[str]) -> Iterable[str]:
    for item in items:
        if item == "-":
            for line in sys.stdin:
                if line.strip():
                    yield line.strip()
        else:
            yield item


def _print_why(r: dict, config: Config) -> None:
    print(r["url"])
    if r["error"]:
        print(f"  error     {r['error']}")
        print()
        return
    how = {"subnet": f"client {r['ip']} is in its subnet", "default": "the default group",
           "override": "chosen with --group"}[r["group_source"]]
    print(f"  canonical   {r['canonical_url']}")
    print(f"  group       {r['group']} ({how})")
    if r["illegal_list"]:
        # Never the entry: the list's name is all anyone outside the licence may see.
        print(f"  illegal     on the illegal-content list {r['illegal_list']}")
    if r["categories"]:
        print(f"  categories  {', '.join(r['categories'])}")
        if r["matched_line"] is not None:
            print(f"  matched     {r['matched_entry']} ({r['matched_list']}, line {r['matched_line']})")
    else:
        print("  categories  none (no list matches this host)")
    deciding = (r["matched_entry"], r["matched_line"])
    others = [m for m in r["matches"] if (m["entry"], m["line"]) != deciding]
    for m in others:
        state = "blocked for this group" if m["blocked_for_group"] else "allowed for this group"
        print(f"  also        {m['category']}: {m['entry']} ({m['list']}, line {m['line']}, "
              f"{m['kind']} entry; {state})")
    for k in r["keywords"]:
        print(f"  keyword     {k['phrase']!r} ({k['theme']}, {k['severity']})")
    if r["reason"] == "override":
        print(f"  override    {r['matched_entry']} ({r['matched_list']})")
    print(f"  action      {r['action'].upper()}" + (f"  ({r['rule']})" if r["rule"] else ""))
    print()


# ---------------------------------------------------------------------------------------------
# reload


def cmd_reload(args: argparse.Namespace) -> int:
    import time

    config = load_config(args.config)
    pidfile = config.data_dir / "schoolgate.pid"
    status = config.data_dir / "reload-status.json"
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        print(f"schoolgate: no running gateway found ({pidfile} is missing or unreadable)",
              file=sys.stderr)
        return 1
    before = status.stat().st_mtime_ns if status.exists() else None
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        print(f"schoolgate: the gateway (pid {pid}) is not running; remove {pidfile}", file=sys.stderr)
        return 1
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if status.exists() and status.stat().st_mtime_ns != before:
            try:
                result = json.loads(status.read_text())
            except (OSError, ValueError):
                time.sleep(0.05)
                continue
            if result.get("ok"):
                print(f"reloaded: generation {result['generation']} in {result['seconds']}s")
                return 0
            for problem in result.get("problems", []):
                print(f"schoolgate: reload refused: {problem}", file=sys.stderr)
            print("schoolgate: the running rules stay in force", file=sys.stderr)
            return 2
        time.sleep(0.05)
    print(f"schoolgate: no reload outcome within {args.timeout:.0f}s", file=sys.stderr)
    return 1


# ---------------------------------------------------------------------------------------------
# event


def cmd_event(args: argparse.Namespace) -> int:
    from .store import StoreError, events_by_reference

    config = load_config(args.config)
    if not config.database_path.exists():
        print(f"schoolgate: no event store yet at {config.database_path}", file=sys.stderr)
        return 1
    try:
        rows = events_by_reference(config.database_path, args.reference)
    except StoreError as e:
        print(f"schoolgate: {e}", file=sys.stderr)
        return 1
    if not rows:
        print(f"schoolgate: no event with reference {args.reference}", file=sys.stderr)
        return 1
    for row in rows:
        if args.json:
            print(json.dumps(row))
        else:
            for key, value in row.items():
                print(f"{key:13} {'' if value is None else value}")
            print()
    return 0


# ---------------------------------------------------------------------------------------------
# run


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


def ensure_ca(config: Config) -> Path:
    """Create the interception CA on first start; return the public certificate's path.

    The CA is named after the school so a pupil inspecting a certificate sees who issued it.
    mitmproxy writes the private key files with mode 0600.
    """
    from mitmproxy import certs

    key_file = config.ca_dir / "mitmproxy-ca.pem"
    if not key_file.exists():
        try:
            certs.CertStore.create_store(
                config.ca_dir,
                "mitmproxy",
                2048,
                organization="Schoolgate",
                cn=f"Schoolgate CA - {config.school_name}"[:64],
            )
        except OSError as e:
            raise StartupError(f"cannot create the CA in {config.ca_dir}: {e}") from None
        log.info("created a new interception CA in %s", config.ca_dir)
    mode = stat.S_IMODE(key_file.stat().st_mode)
    if mode & 0o077:
        log.warning(
            "the CA private key %s can be read by other users (mode %o): run chmod 600 on it",
            key_file, mode,
        )
    return config.ca_cert_path


async def _run(config: Config) -> int:
    from mitmproxy import addons as mitm_addons
    from mitmproxy import options
    from mitmproxy.addons import errorcheck, termlog
    from mitmproxy.master import Master

    from . import addons
    from .gateway import Gateway
    from .store import StoreError

    opts = options.Options()
    master = Master(opts, with_termlog=False)
    # Logs go to stderr, leaving stdout for the start-up banner (and journald keeps both).
    terminal_log = termlog.TermLog(out=sys.stderr)
    master.addons.add(terminal_log)
    master.addons.add(*mitm_addons.default_addons())
    logging.getLogger("schoolgate").setLevel(logging.INFO)

    ca_cert = ensure_ca(config)
    gateway = Gateway(config)
    gateway.log_lists()
    gateway.load_illegal_lists()
    # mitmproxy's ErrorCheck exits on any error logged during start-up. Add it only now: an
    # illegal list whose source is down is logged as an error but handled (the last good copy
    # is in force, or StartupError says why not), and must not stop the gateway from starting.
    master.addons.add(errorcheck.ErrorCheck())
    opts.update(
        listen_host=config.listen.host,
        listen_port=config.listen.port,
        mode=[config.mode],
        confdir=str(config.ca_dir),
        # Lazy: never open a connection to a blocked site's server, not even the TLS handshake
        # mitmproxy would otherwise make to copy its certificate details.
        connection_strategy="lazy",
        # mitm.it's onboarding app is mitmproxy-branded; schools install the CA through their
        # device management instead (README).
        onboarding=False,
        termlog_verbosity="info",
    )
    if config.upstream_trusted_ca:
        opts.update(ssl_verify_upstream_trusted_ca=str(config.upstream_trusted_ca))
    master.addons.add(*addons.ordered(gateway), _Announce(config, gateway, ca_cert))

    try:
        await gateway.start()
    except StoreError as e:
        raise StartupError(str(e)) from None
    except OSError as e:
        raise StartupError(f"cannot serve metrics on {config.metrics}: {e.strerror or e}") from None

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Shutdown in stages: mitmproxy stops serving, then `done` runs and the Record addon
        # drains the event queue into the store before the process exits.
        loop.add_signal_handler(sig, master.shutdown)
    # `schoolgate reload` (or `kill -HUP`) rebuilds the rules without a restart.
    loop.add_signal_handler(signal.SIGHUP, gateway.request_reload, "SIGHUP")
    pidfile = config.data_dir / "schoolgate.pid"
    pidfile.write_text(f"{os.getpid()}\n")
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:
        await master.run()
    finally:
        await gateway.stop()  # no-op when `done` already stopped it
        terminal_log.uninstall()
        pidfile.unlink(missing_ok=True)
    return 0


class _Announce:
    """Print where the gateway listens, the CA certificate and a first command to try."""

    def __init__(self, config: Config, gateway, ca_cert: Path):
        self.config, self.gateway, self.ca_cert = config, gateway, ca_cert

    def running(self) -> None:
        from mitmproxy import ctx

        proxyserver = ctx.master.addons.get("proxyserver")
        addrs = proxyserver.listen_addrs() if proxyserver else []
        if not addrs:
            return
        host, port = addrs[0][0], addrs[0][1]
        shown = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
        proxy = f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"
        example = _example_blocked_host(self.config)
        lines = [
            "",
            f"Schoolgate {__version__} is filtering.",
            f"  proxy listening on  {', '.join(f'{a[0] or '*'}:{a[1]}' for a in addrs)} ({self.config.mode} mode)",
            f"  metrics             http://{self.gateway.metrics_address}/metrics",
            f"  CA certificate      {self.ca_cert}",
            f"  event store         {self.config.database_path}",
        ]
        if example:
            lines += [
                "",
                "See a block page:",
                f"  curl -x {proxy} http://{example}/",
                f"  curl -x {proxy} --cacert {self.ca_cert} https://{example}/",
            ]
        lines.append("")
        print("\n".join(lines), flush=True)


def _example_blocked_host(config: Config) -> str | None:
    """A domain from the default group's first blocked category, to show a newcomer a block."""
    from .classify.lists import read_domain_list

    group = config.groups[config.default_group]
    for category in config.categories.values():
        if category.name not in group.blocked_categories:
            continue
        for path in category.lists:
            entries, _ = read_domain_list(path)
            if entries:
                return "www." + entries[0][0]
    return None


if __name__ == "__main__":
    sys.exit(main())

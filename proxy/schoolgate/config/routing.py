"""Load the alert routing file (`alerts/routing.yaml`): who hears about which concern, through
which channel, and the limits on how often, as a checked `Routing` (`schoolgate.config.model`).
Every problem is reported as ``file:line: key: what is wrong (what is allowed)`` and all of them
are raised together.
"""

from __future__ import annotations

import difflib
import os.path
import re
from pathlib import Path

import yaml

from ..events import ILLEGAL_THEME, SEVERITIES, THEMES
from .model import (
    ABOUT,
    EMAIL,
    WEBHOOK_FORMATS,
    Delivery,
    Destination,
    Limits,
    Routing,
    Rule,
    SmtpSettings,
    WebhookSettings,
)
from .yamltree import Node as _Value
from .yamltree import YamlChecker
from .yamltree import describe as _kind

__all__ = ["ALERT_THEMES", "RoutingError", "load_routing"]

ALERT_THEMES: tuple[str, ...] = (*THEMES, ILLEGAL_THEME)
"""Every theme a routing rule can name: the library's themes and illegal-list hits."""
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
EMAIL_RE = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$|^[^@\s<>,;\"]+@localhost$")


class RoutingError(Exception):
    """The routing file cannot be used. `problems` holds one line per problem, each naming the
    file, line and key; fix them and start again (the previous routing stays in force on reload)."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def load_routing(
    path: str | Path,
    *,
    smtp: SmtpSettings | None = None,
    webhooks: dict[str, WebhookSettings] | None = None,
    known_groups: set[str] | frozenset[str] | None = None,
) -> Routing:
    """Read and check the routing file at `path`. `smtp` and `webhooks`, when given (from the
    main configuration), replace the file's own sections. With `known_groups`, group names are
    checked against them. Raises `RoutingError` listing every problem."""
    path = Path(path).absolute()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RoutingError([f"{path}: alert routing file not found"]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise RoutingError([f"{path}: cannot read the alert routing file: {e}"]) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise RoutingError([f"{where}: not valid YAML: {e.problem or e}"]) from None
    checker = _Checker(path)
    routing = checker.routing(checker.tree(root), smtp, webhooks, known_groups)
    if checker.problems or routing is None:
        raise RoutingError(checker.problems or [f"{path}: the routing file is empty"])
    return routing


_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class _Checker(YamlChecker):
    TOP = ("staff_groups", "templates", "smtp", "webhooks", "rules", "fallback", "limits",
           "delivery")
    SMTP = ("host", "port", "from", "starttls", "implicit_tls", "username", "password_file",
            "ca_file", "timeout")
    WEBHOOK = ("url", "format", "token_file", "ca_file", "timeout")
    RULE = ("name", "themes", "min_severity", "groups", "about", "channel", "recipients",
            "continue")
    DESTINATION = ("channel", "recipients")
    LIMITS = ("dedup_window", "max_alerts", "per")
    DELIVERY = ("first_retry", "longest_retry", "max_attempts", "give_up_after", "keep")

    def __init__(self, path: Path):
        super().__init__(path)
        self.known_groups: set[str] | frozenset[str] | None = None
        self.channels: dict[str, bool] = {}
        """Channel name -> usable (e-mail is named even without a mail server, to say so)."""
        self.has_smtp_section = False

    # -- typed accessors (the tree, mapping, required, sequence, flag: `yamlcheck`) ----------

    def text(self, v: _Value) -> str | None:
        if not isinstance(v.data, str) or not v.data.strip():
            self.bad(v, f"must be non-empty text, not {_kind(v.data)}")
            return None
        return v.data.strip()

    def texts(self, v: _Value) -> list[tuple[str, _Value]]:
        """A list of texts; a single text is taken as a list of one."""
        items = [v] if isinstance(v.data, str) else (self.sequence(v) or [])
        return [(t, item) for item in items if (t := self.text(item)) is not None]

    def choice(self, v: _Value, choices: tuple[str, ...]) -> str | None:
        if v.data not in choices:
            hint = _close(str(v.data), choices)
            also = f"; did you mean '{hint}'?" if hint else ""
            self.bad(v, f"must be one of {', '.join(choices)}, not {v.data!r}{also}")
            return None
        return v.data

    def integer(self, v: _Value, lo: int, hi: int) -> int | None:
        if isinstance(v.data, bool) or not isinstance(v.data, int) or not lo <= v.data <= hi:
            self.bad(v, f"must be a whole number from {lo} to {hi}, not {_kind(v.data)}")
            return None
        return v.data

    def duration(self, v: _Value) -> float | None:
        """Seconds as a number, or text such as `90s`, `30m`, `12h`, `1d`."""
        if isinstance(v.data, int | float) and not isinstance(v.data, bool) and v.data > 0:
            return float(v.data)
        if isinstance(v.data, str) and (m := _DURATION.fullmatch(v.data)) and float(m[1]) > 0:
            return float(m[1]) * _UNITS[m[2]]
        self.bad(v, f"must be a duration such as 30s, 10m, 24h or 1d, not {_kind(v.data)}")
        return None

    def file_path(self, v: _Value, what: str) -> Path | None:
        text = self.text(v)
        if text is None:
            return None
        p = Path(text).expanduser()
        p = Path(os.path.normpath(p if p.is_absolute() else self.base / p))
        if not p.is_file():
            self.bad(v, f"{what} {p} {'is a folder' if p.is_dir() else 'does not exist'}")
            return None
        if not os.access(p, os.R_OK):
            self.bad(v, f"{what} {p} cannot be read by this user; check its permissions")
            return None
        return p

    def email(self, v: _Value) -> str | None:
        text = self.text(v)
        if text is not None and not EMAIL_RE.match(text):
            self.bad(v, f"{text!r} is not an e-mail address such as dsl@school.example")
            return None
        return text

    # -- the schema ----------------------------------------------------------------------------

    def routing(
        self,
        root: _Value,
        smtp_given: SmtpSettings | None,
        webhooks_given: dict[str, WebhookSettings] | None,
        known_groups: set[str] | frozenset[str] | None,
    ) -> Routing | None:
        top = self.mapping(root, self.TOP)
        if top is None:
            return None
        self.known_groups = known_groups
        staff: set[str] = set()
        if "staff_groups" in top:
            staff = {name for name, item in self.texts(top["staff_groups"])
                     if self.group_name(item, name)}

        smtp = smtp_given
        # `smtp: off`: no mail server (yet). E-mail rules still stand, and their alerts are
        # recorded in the store and the log only; the gateway says so once at start-up.
        mail_off = smtp is None and "smtp" in top and top["smtp"].data is False
        if smtp is None and "smtp" in top and not mail_off:
            smtp = self.smtp(top["smtp"])
        webhooks = dict(webhooks_given or {})
        if webhooks_given is None and "webhooks" in top:
            webhooks = self.webhooks(top["webhooks"])
        self.channels = {EMAIL: smtp is not None or mail_off, **{name: True for name in webhooks}}
        self.has_smtp_section = "smtp" in top or smtp_given is not None

        rules: list[Rule] = []
        if (rv := self.required(top, root, "rules")) is not None:
            for i, item in enumerate(self.sequence(rv) or []):
                if (rule := self.rule(item, i, frozenset(staff))) is not None:
                    rules.append(rule)

        fallback: dict[str, Destination] = {}
        if (fv := self.required(top, root, "fallback")) is not None:
            fm = self.mapping(fv, ("pupils", "staff"))
            for who in ("pupils", "staff"):
                if fm is not None and (dv := self.required(fm, fv, who)) is not None:
                    dm = self.mapping(dv, self.DESTINATION)
                    if dm is not None and (d := self.destination(dm, dv, f"fallback.{who}")):
                        fallback[who] = d

        limits = Limits()
        if "limits" in top and (lm := self.mapping(top["limits"], self.LIMITS)) is not None:
            default = Limits()
            limits = Limits(
                dedup_window=self.duration(lm["dedup_window"]) or default.dedup_window
                if "dedup_window" in lm else default.dedup_window,
                max_alerts=self.integer(lm["max_alerts"], 1, 10_000) or default.max_alerts
                if "max_alerts" in lm else default.max_alerts,
                per=self.duration(lm["per"]) or default.per if "per" in lm else default.per,
            )
        delivery = Delivery()
        if "delivery" in top and (dm := self.mapping(top["delivery"], self.DELIVERY)) is not None:
            d2 = Delivery()

            def dur(key: str) -> float:
                default: float = getattr(d2, key)
                return (self.duration(dm[key]) or default) if key in dm else default

            delivery = Delivery(
                first_retry=dur("first_retry"),
                longest_retry=dur("longest_retry"),
                max_attempts=self.integer(dm["max_attempts"], 1, 1000) or d2.max_attempts
                if "max_attempts" in dm else d2.max_attempts,
                give_up_after=dur("give_up_after"),
                keep=dur("keep"),
            )
            if delivery.longest_retry < delivery.first_retry:
                self.bad(dm.get("longest_retry", top["delivery"]),
                         "must be at least first_retry")

        templates: Path | None = None
        if "templates" in top and (t := self.text(top["templates"])) is not None:
            p = Path(t).expanduser()
            templates = Path(os.path.normpath(p if p.is_absolute() else self.base / p))
            if not templates.is_dir():
                self.bad(top["templates"], f"templates folder {templates} does not exist")

        if self.problems or len(fallback) < 2:
            return None
        return Routing(
            path=self.file,
            staff_groups=frozenset(staff),
            rules=tuple(rules),
            fallback_pupils=fallback["pupils"],
            fallback_staff=fallback["staff"],
            smtp=smtp,
            webhooks=webhooks,
            limits=limits,
            delivery=delivery,
            templates=templates,
        )

    def group_name(self, v: _Value, name: str) -> bool:
        if self.known_groups is not None and name not in self.known_groups:
            hint = difflib.get_close_matches(name, sorted(self.known_groups), n=1)
            also = f"; did you mean '{hint[0]}'?" if hint else ""
            self.bad(v, f"unknown group {name!r} (defined: {', '.join(sorted(self.known_groups))})"
                     f"{also}")
            return False
        return True

    def smtp(self, v: _Value) -> SmtpSettings | None:
        m = self.mapping(v, self.SMTP)
        if m is None:
            return None
        hv = self.required(m, v, "host")
        host = self.text(hv) if hv is not None else None
        port = self.integer(m["port"], 1, 65535) if "port" in m else None
        sender = self.email_or_named(m["from"]) if "from" in m else "schoolgate@localhost"
        starttls = self.flag(m["starttls"]) if "starttls" in m else False
        implicit = self.flag(m["implicit_tls"]) if "implicit_tls" in m else False
        if starttls and implicit:
            self.bad(m["implicit_tls"], "cannot be combined with starttls: use starttls for "
                     "port 587, implicit_tls for port 465")
        username = self.text(m["username"]) if "username" in m else None
        password = self.file_path(m["password_file"], "password file") \
            if "password_file" in m else None
        for given, needed in (("username", "password_file"), ("password_file", "username")):
            if given in m and needed not in m:
                self.problem(m[given].line, f"{v.key}.{needed}", f"is required with {given}")
        ca = self.file_path(m["ca_file"], "CA file") if "ca_file" in m else None
        timeout = self.duration(m["timeout"]) if "timeout" in m else 30.0
        if host is None or sender is None or timeout is None:
            return None
        default_port = 465 if implicit else 587 if starttls else 25
        return SmtpSettings(
            host=host, port=port or default_port, sender=sender, starttls=bool(starttls),
            implicit_tls=bool(implicit), username=username, password_file=password, ca_file=ca,
            timeout=timeout,
        )

    def email_or_named(self, v: _Value) -> str | None:
        """`addr@school` or `Name <addr@school>`."""
        text = self.text(v)
        if text is None:
            return None
        m = re.fullmatch(r"(?:[^<>]*<([^<>]+)>|([^<>]+))", text)
        if not m or not EMAIL_RE.match((m[1] or m[2]).strip()):
            self.bad(v, f"{text!r} is not an e-mail address such as "
                     "'Schoolgate <schoolgate@school.example>'")
            return None
        return text

    def webhooks(self, v: _Value) -> dict[str, WebhookSettings]:
        out: dict[str, WebhookSettings] = {}
        for name, wv in (self.mapping(v, None) or {}).items():
            if not NAME_RE.match(name) or name == EMAIL:
                self.bad(wv, "webhook names use lowercase letters, digits, '-' and '_' (at most "
                         f"63) and cannot be {EMAIL!r}")
                continue
            m = self.mapping(wv, self.WEBHOOK)
            if m is None:
                continue
            uv = self.required(m, wv, "url")
            url = self.text(uv) if uv is not None else None
            if url is not None and uv is not None and not re.match(r"https?://[^/\s]+", url):
                # Never echo the URL back: Teams and Slack put the secret in it.
                self.bad(uv, "must be an http:// or https:// address")
                url = None
            fmt = self.choice(m["format"], WEBHOOK_FORMATS) if "format" in m else "json"
            token = self.file_path(m["token_file"], "token file") if "token_file" in m else None
            ca = self.file_path(m["ca_file"], "CA file") if "ca_file" in m else None
            timeout = self.duration(m["timeout"]) if "timeout" in m else 10.0
            if url is None or fmt is None or timeout is None:
                continue
            out[name] = WebhookSettings(name, url, fmt, token, ca, timeout)
        return out

    def destination(self, m: dict[str, _Value], parent: _Value, rule: str) -> Destination | None:
        channel = EMAIL
        cv = m.get("channel")
        if cv is not None:
            text = self.text(cv)
            if text is None:
                return None
            if text not in self.channels:
                webhooks = [c for c in self.channels if c != EMAIL]
                self.bad(cv, f"unknown channel {text!r} (allowed: {EMAIL}"
                         f"{''.join(', ' + w for w in webhooks)}; webhooks are named under "
                         "webhooks:)")
                return None
            channel = text
        if channel == EMAIL and not self.channels[EMAIL]:
            if not self.has_smtp_section:
                self.bad(cv or parent, "e-mail needs an smtp: section (host, port, from) in this "
                         "file or the main configuration, or `smtp: off` to record e-mail "
                         "alerts in the store and the log only")
            return None
        recipients: list[str] = []
        if channel == EMAIL:
            rv = self.required(m, parent, "recipients")
            if rv is None:
                return None
            before = len(self.problems)
            for _, item in self.texts(rv):
                if (addr := self.email(item)) is not None:
                    recipients.append(addr)
            if len(self.problems) > before:
                return None
            if not recipients:
                self.bad(rv, "needs at least one e-mail address")
                return None
        elif "recipients" in m:
            self.bad(m["recipients"], f"only means something for e-mail; webhook {channel!r} "
                     "posts to the channel its URL names")
            return None
        return Destination(channel, tuple(dict.fromkeys(recipients)), rule)

    def rule(self, v: _Value, index: int, staff: frozenset[str]) -> Rule | None:
        m = self.mapping(v, self.RULE)
        if m is None:
            return None
        before = len(self.problems)
        name = (self.text(m["name"]) or "") if "name" in m else ""
        themes: set[str] = set()
        for theme, item in self.texts(m["themes"]) if "themes" in m else []:
            if self.choice(item, ALERT_THEMES) is not None:
                themes.add(theme)
        severity = self.choice(m["min_severity"], SEVERITIES) if "min_severity" in m else "low"
        groups: set[str] = set()
        for group, item in self.texts(m["groups"]) if "groups" in m else []:
            if self.group_name(item, group):
                groups.add(group)
        # Seed policy 11.6: concerns about staff go to the headteacher. A rule only sees them
        # when it says so (about: staff or anyone), or names only staff groups.
        if groups and groups <= staff:
            default_about = "staff"
        else:
            default_about = "pupils"
        about = self.choice(m["about"], ABOUT) if "about" in m else default_about
        if about == "pupils" and groups & staff:
            self.bad(m.get("about", m["groups"]),
                     f"this rule is about pupils but names staff groups "
                     f"({', '.join(sorted(groups & staff))}); concerns about staff go to the "
                     "headteacher: give them their own rule with about: staff")
        if about == "staff" and groups - staff:
            self.bad(m["about"] if "about" in m else m["groups"],
                     f"this rule is about staff but names groups outside staff_groups "
                     f"({', '.join(sorted(groups - staff))})")
        cont = bool(self.flag(m["continue"])) if "continue" in m else False
        dest = self.destination(m, v, name or f"rules[{index}]")
        if dest is None or severity is None or about is None or len(self.problems) > before:
            return None
        return Rule(
            name=name or f"rules[{index}]",
            themes=frozenset(themes),
            min_severity=severity,
            groups=frozenset(groups),
            about=about,
            destination=dest,
            continue_=cont,
            where=f"{self.file}:{v.line}",
        )


def _close(text: str, choices: tuple[str, ...]) -> str | None:
    """The choice `text` most likely meant, also by one word of it ("sucide" ->
    suicide_selfharm)."""
    if hint := difflib.get_close_matches(text, choices, n=1):
        return hint[0]
    words = {word: choice for choice in choices for word in choice.split("_") if len(word) > 3}
    hint = difflib.get_close_matches(text, list(words), n=1)
    return words[hint[0]] if hint else None

"""The typed configuration: every setting Schoolgate reads, already checked, as frozen dataclasses.

A leaf of the package: it imports nothing of Schoolgate, so every layer can take a `Config` and
the settings of its own section. The loader (`schoolgate.config.loader`) builds these from the
YAML files and reports each problem with its file and line; nothing here reads a file.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigError(Exception):
    """The configuration file cannot be used. `problems` holds one line per problem, each naming
    the file, line and key; fix them and start again (nothing was started)."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


# ---------------------------------------------------------------------------------------------
# where to listen, what to block

@dataclass(frozen=True, slots=True)
class Address:
    """A host and TCP port to listen on. Port 0 asks the operating system for a free port."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Category:
    """A named set of sites, such as `gambling`."""

    name: str
    """Machine name, used in group policies, events and metric labels."""
    title: str
    """What people read on the block page, such as "Gambling"."""
    lists: tuple[Path, ...]
    """List files or UT1 category folders (absolute paths); file formats are detected."""


@dataclass(frozen=True, slots=True)
class Override:
    """A group's local allow or block entry: it beats the categories, never the illegal lists."""

    target: str
    """As written: a domain (`example.com`) or a URL prefix (`example.com/teaching/`)."""
    host: str
    """Normalised host; the entry covers it and every name under it."""
    path: str | None
    """Path prefix for URL entries (starts with `/`); None for a whole domain."""
    reason: str
    where: str
    """`file:line: key`, for messages that refuse or explain the entry."""


SAFE_SEARCH_LEVELS = ("strict", "moderate", "off")


HTTPS_MODES = ("decrypt", "selective", "sni-only")
"""A group's `https` key: decrypt every connection (but the do-not-decrypt list), decrypt only
hosts that need a URL-level decision (`schoolgate.policy.decryption`), or decide every
connection by its host name and never decrypt."""


BLOCK_OR_LOG = ("block", "log")


@dataclass(frozen=True, slots=True)
class Window:
    """Some days of the week and a time of day range, start included and end excluded."""

    days: frozenset[int]
    """Days the window starts on, Monday 0 to Sunday 6."""
    start: int
    """Seconds after local midnight."""
    end: int
    """Seconds after local midnight (86400 for 24:00). Before `start`, the window runs past
    midnight into the next day: "Fri 22:00-06:00" covers Saturday until 06:00."""
    text: str
    """The window as written in the config."""

    def covers(self, weekday: int, second: int) -> bool:
        if self.start < self.end:
            return weekday in self.days and self.start <= second < self.end
        # Overnight: the evening part on a listed day, the morning part on the day after one.
        return (weekday in self.days and second >= self.start) or (
            (weekday - 1) % 7 in self.days and second < self.end
        )


@dataclass(frozen=True, slots=True)
class Schedule:
    """A named set of windows, such as `school_day`."""

    name: str
    title: str
    windows: tuple[Window, ...]
    timezone: str = "Europe/London"
    """IANA zone the windows are read in: the school's, so lessons start at 08:30 on the clock
    on the wall in winter and in summer alike."""

    def active(self, when: float) -> bool:
        """Whether `when` (a Unix time) falls in one of the windows."""
        local = datetime.fromtimestamp(when, ZoneInfo(self.timezone))  # ZoneInfo caches by key
        second = local.hour * 3600 + local.minute * 60 + local.second
        weekday = local.weekday()
        return any(w.covers(weekday, second) for w in self.windows)


@dataclass(frozen=True, slots=True)
class ScheduledBlock:
    """Categories a group blocks only while a named schedule is active."""

    schedule: str
    categories: frozenset[str]


@dataclass(frozen=True, slots=True)
class Group:
    """People or devices that share one filtering policy, such as `ks3` or `staff`."""

    name: str
    title: str
    subnets: tuple[Network, ...]
    """Client networks in this group. Nested networks are allowed: the most specific one wins."""
    blocked_categories: frozenset[str]
    """Blocked at all times."""
    allow: tuple[Override, ...] = ()
    block: tuple[Override, ...] = ()
    blocked_during: tuple[ScheduledBlock, ...] = ()
    """Blocked only while a schedule is active (social networks in lessons)."""
    walled_garden: bool = False
    """Allow-only: nothing is allowed but `allowed_categories` and the group's `allow` entries."""
    allowed_categories: frozenset[str] = frozenset()
    """With `walled_garden`, the categories that are open (such as `education`)."""
    safe_search: str = "strict"
    """Search engines' safe mode: `strict`, `moderate` or `off`."""
    youtube: str = "strict"
    """YouTube Restricted Mode: `strict`, `moderate` or `off`."""
    keyword_threshold: float = 10.0
    """The keyword score at which a search or an address is blocked: each distinct phrase's
    weight times its severity's points (high 10, medium 3, low 1). A lower score still flags."""
    page_scan_bytes: int = 1024 * 1024
    """Pages (HTML, plain text, JSON) up to this many bytes, as sent and once decoded, are held
    until their text is scanned, and blocked whole when their keyword score reaches
    `keyword_threshold`; a larger one is passed through unscanned (and counted). 0: no page is
    scanned."""
    https: str = "decrypt"
    """`decrypt` (full URL seen); `selective`: only hosts that need a URL-level decision are
    decrypted, the rest are decided by the host name in the TLS handshake and relayed (see
    `schoolgate.policy.decryption`); or `sni-only` for devices without the school's
    certificate: the host name decides, and the connection is never decrypted."""
    no_sni: str = "block"
    """A TLS handshake without a host name, or a CONNECT to a bare IP address: `block` or
    `log` (let through and record)."""
    circumvention: str = "block"
    """VPNs, proxies, DNS-over-HTTPS and tunnels to unusual ports: `block` or `log`."""


# ---------------------------------------------------------------------------------------------
# who is browsing

@dataclass(frozen=True, slots=True)
class PushSettings:
    """The local HTTP endpoint network systems feed the IP -> user map through."""

    listen: Address
    token_file: Path
    """File holding the bearer token (at least 16 characters); keep it readable by the gateway
    and the feeding system only."""
    default_ttl: float = 8 * 3600


#: Groups that list the user: by DN (groupOfNames, groupOfUniqueNames, Active Directory groups)
#: or by username (posixGroup's memberUid).
DEFAULT_GROUP_FILTER = (
    "(|(&(objectClass=groupOfNames)(member={dn}))"
    "(&(objectClass=groupOfUniqueNames)(uniqueMember={dn}))"
    "(&(objectClass=group)(member={dn}))"
    "(&(objectClass=posixGroup)(memberUid={user})))"
)


@dataclass(frozen=True, slots=True)
class LdapSettings:
    """How to reach the directory and find users and their groups. Give either
    `user_dn_template` or `user_search_base`."""

    url: str
    """``ldap://host[:port]`` or ``ldaps://host[:port]``. Passwords cross the network: use ldaps
    or `start_tls`, and the server's DNS name as it appears in its certificate."""
    user_dn_template: str | None = None
    """Bind straight as this DN, ``{user}`` replaced by the (escaped) username, such as
    ``uid={user},ou=people,dc=school,dc=example``; or ``{user}@school.local`` for an Active
    Directory UPN bind (then set `group_search_base` or a service account is not needed)."""
    user_search_base: str | None = None
    """Find the user's DN by searching below this DN with `user_filter` (needs a service account
    where anonymous search is off, as it is in Active Directory)."""
    user_filter: str = "(uid={user})"
    """Search filter for the user; ``{user}`` is replaced, escaped. Active Directory:
    ``(sAMAccountName={user})``."""
    service_dn: str | None = None
    """A read-only account that searches for users and groups. Without one, searches run as the
    user just bound (logins) or anonymously (users known only from the IP map)."""
    service_password: str | None = dataclasses.field(default=None, repr=False)
    group_search_base: str | None = None
    """Search for groups below this DN with `group_filter`. None: read the user's own `memberOf`
    attribute (Active Directory; OpenLDAP with the memberof overlay)."""
    group_filter: str = DEFAULT_GROUP_FILTER
    """``{dn}`` and ``{user}`` are replaced, escaped. Active Directory with nested groups:
    ``(member:1.2.840.113556.1.4.1941:={dn})``."""
    group_mapping: tuple[tuple[str, str], ...] = ()
    """``(directory group, Schoolgate group)`` pairs, in priority order: the first pair whose
    directory group the user is in decides. A directory group is a full DN or a bare ``cn``;
    both compare without regard to case."""
    start_tls: bool = False
    """Upgrade an ``ldap://`` connection with StartTLS before binding."""
    ca_file: Path | None = None
    """CA certificate(s) that signed the server's certificate; None: the system's CAs."""
    timeout: float = 5.0
    """Seconds to connect, and to wait for each answer."""
    cache_seconds: float = 300.0
    """How long a successful login and a user's groups are remembered."""
    cache_size: int = 10_000
    """Logins and users remembered at most; the oldest are forgotten first."""

    def __post_init__(self) -> None:
        problems = []
        if not self.url.lower().startswith(("ldap://", "ldaps://")):
            problems.append(f"url: {self.url!r} must start with ldap:// or ldaps://")
        if (self.user_dn_template is None) == (self.user_search_base is None):
            problems.append("give exactly one of user_dn_template and user_search_base")
        if self.user_dn_template is not None and "{user}" not in self.user_dn_template:
            problems.append("user_dn_template: must contain {user}")
        if "{user}" not in self.user_filter:
            problems.append("user_filter: must contain {user}")
        if self.group_search_base is not None and not (
                "{dn}" in self.group_filter or "{user}" in self.group_filter):
            problems.append("group_filter: must contain {dn} or {user}")
        if (self.service_dn is None) != (self.service_password is None):
            problems.append("service_dn and service_password go together")
        if self.start_tls and self.url.lower().startswith("ldaps://"):
            problems.append("start_tls: not with ldaps:// (already encrypted)")
        if not 0 < self.timeout <= 60:
            problems.append(f"timeout: must be from 0 to 60 seconds, not {self.timeout}")
        for ldap_group, group in self.group_mapping:
            if not ldap_group.strip() or not group.strip():
                problems.append(f"group_mapping: ({ldap_group!r}, {group!r}) has an empty name")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass(frozen=True, slots=True)
class IdentityConfig:
    """Where users, devices and their groups come from (see `schoolgate.identify`)."""

    htpasswd: Path | None = None
    """Basic proxy logins checked against an Apache htpasswd file."""
    ldap: LdapSettings | None = None
    """Proxy logins checked by an LDAP bind, and directory
    groups mapped to Schoolgate groups."""
    login_required: frozenset[str] = frozenset()
    """Groups (chosen by subnet) whose devices must log in to the proxy (407 until they do)."""
    ip_map: Path | None = None
    """CSV `ip,user[,ttl_seconds]` loaded at start and reload."""
    push: PushSettings | None = None
    devices: Path | None = None
    """CSV `key,device`: an IP or MAC address and the device's name."""
    user_groups: Path | None = None
    """CSV `user,group`."""

    @property
    def proxy_auth(self) -> bool:
        return self.htpasswd is not None or self.ldap is not None


# ---------------------------------------------------------------------------------------------
# what is decided at the handshake, circumvention, illegal lists, events

@dataclass(frozen=True, slots=True)
class TlsSettings:
    """What is never decrypted: banking, health and government sites, by host name."""

    do_not_decrypt: tuple[Path, ...] = ()
    """Domain list files; an entry covers the name and every name under it."""
    do_not_decrypt_hosts: tuple[str, ...] = ()
    """Further domains written in the config itself, normalised."""


@dataclass(frozen=True, slots=True)
class CircumventionSettings:
    """What counts as getting round the filter."""

    categories: frozenset[str] = frozenset()
    """Categories whose sites are circumvention tools (UT1 vpn, redirector, doh, ...)."""
    allowed_ports: tuple[tuple[int, int], ...] = ((443, 443),)
    """Port ranges (first, last) a CONNECT may reach; any other is a circumvention attempt
    (tunnels to SSH, VPNs, proxies)."""

    def port_allowed(self, port: int) -> bool:
        return any(lo <= port <= hi for lo, hi in self.allowed_ports)

    @property
    def ports_text(self) -> str:
        return ", ".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in self.allowed_ports)


ILLEGAL_LIST_KINDS = ("iwf", "ctiru", "other")
"""`iwf` (the block page shows the IWF's access-denied wording), `ctiru`, or `other`."""
ILLEGAL_LIST_FORMS = ("plain", "sha256")
"""`plain`: one URL or domain per line; `sha256`: the hex digest of each lookup expression."""


@dataclass(frozen=True, slots=True)
class IllegalListConfig:
    """An illegal-content list (IWF, CTIRU): where it comes from and how often it is refreshed.
    See `schoolgate.classify.illegal` (matching) and `schoolgate.sources.illegal` (loading)."""

    name: str
    """Short name used in events, metrics and the block page, such as `iwf`."""
    title: str
    kind: str
    """One of `ILLEGAL_LIST_KINDS`."""
    source: str
    """Absolute file path, or an http(s) URL."""
    form: str
    """One of `ILLEGAL_LIST_FORMS`."""
    refresh_seconds: float = 12 * 3600
    stale_after_seconds: float = 13 * 3600
    """Older than this without a successful refresh, the list is reported stale."""


@dataclass(frozen=True, slots=True)
class EventSettings:
    """How decisions are written to the store: hooks enqueue, one writer drains in batches."""

    queue_size: int = 100_000
    """Events held in memory at most; beyond it events are dropped and counted."""
    batch_size: int = 500
    """Events written in one transaction at most."""
    flush_interval: float = 1.0
    """Seconds a queued event may wait for its batch to fill before it is written anyway."""


# ---------------------------------------------------------------------------------------------
# reports, retention and the filter check

RETENTION_KINDS = ("allowed", "blocked", "safeguarding", "alerts")
"""The kinds of record a retention period is set for, in the order reports list them."""


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How long each kind of record is kept. The defaults follow common UK school practice; a
    school sets its own in its data protection policy."""

    allowed: timedelta = timedelta(days=30)
    """Allowed browsing (neither blocked nor flagged)."""
    blocked: timedelta = timedelta(days=365)
    """Blocks and filtering errors that were not safeguarding concerns."""
    safeguarding: timedelta = timedelta(days=730)
    """Flagged searches and pages (any event with a theme) and illegal-list hits."""
    alerts: timedelta = timedelta(days=730)
    """Alerts sent to the DSL (the alert outbox)."""

    def __post_init__(self) -> None:
        for kind in RETENTION_KINDS:
            if getattr(self, kind) <= timedelta(0):
                raise ValueError(f"retention for {kind} must be longer than zero")

    def period(self, kind: str) -> timedelta:
        return getattr(self, kind)


@dataclass(frozen=True, slots=True)
class ReportSettings:
    """When reports are made, where they go, and who gets them."""

    daily_at: time = time(7, 0)
    """School time at which the previous day's report is written (and e-mailed)."""
    weekly_on: int = 0
    """Weekday of the weekly summary (0 Monday ... 6 Sunday); it covers the week before."""
    weekly_at: time = time(7, 30)
    purge_at: time = time(2, 30)
    """School time of the nightly retention purge (a quiet hour)."""
    out_dir: Path | None = None
    """Where report files are written; None for `<data_dir>/reports`."""
    email_to: tuple[str, ...] = ()
    """The DSL and deputies: they get the daily report. Empty: files only."""
    weekly_email_to: tuple[str, ...] = ()
    """Leaders and governors: they get the weekly summary (no names in it)."""
    retention: RetentionPolicy = RetentionPolicy()
    """How long each kind of record is kept."""


@dataclass(frozen=True, slots=True)
class RunTime:
    """When the gateway runs the check by itself: some days of the week at a school time."""

    days: frozenset[int]
    """Monday 0 ... Sunday 6."""
    at: time
    text: str
    """As written, such as `Mon 07:00`."""


@dataclass(frozen=True, slots=True)
class CheckSettings:
    """The config's `check` section. Every canary has a default; these replace them."""

    schedule: tuple[RunTime, ...] = ()
    """When the gateway runs the check by itself (school time); empty: only by command."""
    illegal: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    """Illegal list name -> test URLs its provider gives for checking (never a real entry).
    Default: the shipped made-up test entries, when the list holds them."""
    categories: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Category -> the URL to test it with. Default: the first usable domain of its lists."""
    education: str | None = None
    """A page every group must be able to open. Default: a domain of the `education` category."""
    outside_garden: str | None = None
    """For walled gardens, a page outside their open categories. Default: `OUTSIDE_GARDEN`."""


# ---------------------------------------------------------------------------------------------
# alert routing (its own file, alerts/routing.yaml)

EMAIL = "email"
"""The channel name of e-mail; every other channel is a webhook named in the routing file."""


SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2}


ABOUT = ("pupils", "staff", "anyone")


WEBHOOK_FORMATS = ("json", "teams", "slack")


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    """The mail server alerts are sent through."""

    host: str
    port: int = 25
    sender: str = "schoolgate@localhost"
    """The From address (`from:` in the file)."""
    starttls: bool = False
    """Upgrade the connection with STARTTLS, and refuse to send if the server cannot (port 587)."""
    implicit_tls: bool = False
    """TLS from the first byte (port 465). Cannot be combined with `starttls`."""
    username: str | None = None
    password_file: Path | None = None
    """Read at every send, so a changed password needs no restart. Never logged."""
    ca_file: Path | None = None
    """CA bundle to check the server's certificate against (default: the system's)."""
    timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """A messaging channel (Teams, Slack or any HTTP endpoint) alerts are POSTed to as JSON."""

    name: str
    url: str = dataclasses.field(repr=False)
    """May carry a secret (Teams and Slack put one in the path): never logged or shown."""
    format: str = "json"
    """`json` (Schoolgate's own), `teams` (Adaptive Card message) or `slack` (blocks)."""
    token_file: Path | None = None
    """Bearer token sent in the Authorization header, read at every send. Never logged."""
    ca_file: Path | None = None
    timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class Destination:
    """Where one alert goes: a channel and, for e-mail, the addresses."""

    channel: str
    recipients: tuple[str, ...] = ()
    rule: str = ""
    """The rule that chose it (its name, or `rules[2]`), or `fallback.pupils` / `fallback.staff`."""

    @property
    def key(self) -> str:
        """What rate limits count by: the channel and its recipients."""
        return f"{self.channel}:{','.join(self.recipients)}"


@dataclass(frozen=True, slots=True)
class Rule:
    """One routing rule. An empty `themes` or `groups` matches any."""

    name: str
    themes: frozenset[str]
    min_severity: str
    groups: frozenset[str]
    about: str
    """`pupils` (everyone outside `staff_groups`, guests included), `staff` or `anyone`."""
    destination: Destination
    continue_: bool = False
    """True: later rules are checked too (to add a webhook beside an e-mail, say)."""
    where: str = ""
    """`file:line` of the rule."""

    def matches(self, theme: str, severity: str, group: str, is_staff: bool) -> bool:
        if self.themes and theme not in self.themes:
            return False
        if SEVERITY_RANK[severity] < SEVERITY_RANK[self.min_severity]:
            return False
        if self.groups and group not in self.groups:
            return False
        if self.about == "pupils" and is_staff:
            return False
        if self.about == "staff" and not is_staff:
            return False
        return True


@dataclass(frozen=True, slots=True)
class Limits:
    """How often alerts may go out."""

    dedup_window: float = 30 * 60
    """Seconds: the same person and theme alert once in this window; later ones are counted
    and reported in the next alert after the window."""
    max_alerts: int = 20
    """Alerts one destination may receive in `per` seconds before alerts to it pause."""
    per: float = 10 * 60


@dataclass(frozen=True, slots=True)
class Delivery:
    """How hard the outbox tries."""

    first_retry: float = 30.0
    """Seconds before the second attempt; it doubles after each failure..."""
    longest_retry: float = 30 * 60
    """...up to this."""
    max_attempts: int = 12
    give_up_after: float = 24 * 3600
    """Seconds after the alert was made; whichever bound comes first marks it failed."""
    keep: float = 30 * 86400
    """Sent, failed and held rows are deleted this long after they were made (they hold
    personal data; the events themselves stay in the store under its own retention)."""


@dataclass(frozen=True, slots=True)
class Routing:
    """The routing file, checked."""

    path: Path
    staff_groups: frozenset[str]
    rules: tuple[Rule, ...]
    fallback_pupils: Destination
    fallback_staff: Destination
    smtp: SmtpSettings | None
    """The mail server; None: none is configured (`smtp: off`), and e-mail alerts are recorded
    in the store and the log only (`email_recorded_only`)."""
    webhooks: dict[str, WebhookSettings]
    limits: Limits = Limits()
    delivery: Delivery = Delivery()
    templates: Path | None = None
    """Folder of the e-mail templates (`alert.txt`, `alert.html`, ...) when the routing file
    names one; None: the `email/` folder of the config's `templates`, then the package's."""

    @property
    def email_recorded_only(self) -> bool:
        """No mail server: an alert for `email` is kept in the store and logged, never sent."""
        return self.smtp is None

    def is_staff(self, group: str) -> bool:
        return group in self.staff_groups

    def route(self, theme: str, severity: str, group: str, *,
              must_alert: bool) -> list[Destination]:
        """Destinations for a concern, in rule order, without duplicates. With `must_alert`
        (illegal-list hits, high severity) the fallback applies when no rule matched."""
        staff = self.is_staff(group)
        out: list[Destination] = []
        for rule in self.rules:
            if rule.matches(theme, severity, group, staff):
                if all(d.key != rule.destination.key for d in out):
                    out.append(rule.destination)
                if not rule.continue_:
                    break
        if not out and must_alert:
            out.append(self.fallback_staff if staff else self.fallback_pupils)
        return out


# ---------------------------------------------------------------------------------------------
# the whole

@dataclass(frozen=True, slots=True)
class Config:
    """Everything Schoolgate needs to start, already checked. Paths are absolute."""

    path: Path
    school_name: str
    timezone: str
    listen: Address
    mode: str
    ca_dir: Path
    data_dir: Path
    upstream_trusted_ca: Path | None
    """Extra CA bundle the gateway trusts for origin servers (a school's internal CA, or tests)."""
    metrics: Address
    events: EventSettings
    categories: dict[str, Category]
    groups: dict[str, Group]
    default_group: str
    illegal_lists: dict[str, IllegalListConfig] = dataclasses.field(default_factory=dict)
    upstream_connect_timeout: float = 30.0
    """Seconds to reach a site's server (its name looked up, the connection made) before the
    person is shown "the site did not answer in time" (504), under `schoolgate run`."""
    schedules: dict[str, Schedule] = dataclasses.field(default_factory=dict)
    """Named time windows, in the school's time zone."""
    tls: TlsSettings = TlsSettings()
    block_search_engines: tuple[str, ...] | None = None
    """Search engines with no safe mode that can be locked, blocked for groups with safe search
    on; None for the built-in list (`schoolgate.policy.safesearch.NO_SAFE_MODE_ENGINES`)."""
    circumvention: CircumventionSettings = CircumventionSettings()
    identity: IdentityConfig = IdentityConfig()
    alert_routing: Routing | None = None
    """The alert routing file, checked; None: no alerts are sent."""
    reports: ReportSettings = ReportSettings()
    """When the daily report and weekly summary are written and e-mailed, the nightly purge,
    and how long each kind of record is kept."""
    keyword_library: Path | None = None
    """Folder of keyword library files (`keywords/` format): searches and addresses are
    matched against it; None: no keyword monitoring."""
    check: CheckSettings = CheckSettings()
    """When the gateway runs `schoolgate check` itself, and the canaries that replace the
    defaults."""
    templates: Path | None = None
    """The school's templates folder (block page, problem-report pages, reports, check summary,
    and e-mails in `email/`): a file found there replaces the package's copy, any other comes
    from the package; None: the package's copies only."""

    @property
    def database_path(self) -> Path:
        return self.data_dir / "schoolgate.sqlite3"

    @property
    def reports_dir(self) -> Path:
        """Where report files are written."""
        return self.reports.out_dir or self.data_dir / "reports"

    @property
    def ca_cert_path(self) -> Path:
        """The public CA certificate that managed devices must trust (PEM)."""
        return self.ca_dir / "mitmproxy-ca-cert.pem"

    def replace(self, **changes: Any) -> Config:  # noqa: ANN401 - any field, as in dataclasses.replace
        return dataclasses.replace(self, **changes)

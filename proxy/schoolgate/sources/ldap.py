"""Proxy logins checked by binding to the school's directory (Active Directory, OpenLDAP), and the
user's directory groups mapped to Schoolgate groups.

Every call that reaches the server blocks for up to `timeout` seconds, so the gateway runs it in
a worker thread; the answers are cached, and the per-request questions (`recently_verified`,
`cached_group`) never leave memory. A failure is logged (never with the password) and refuses.
"""

from __future__ import annotations

import contextlib
import logging
import math
import ssl
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

with warnings.catch_warnings():
    # ldap3 imports names that its dependency pyasn1 has deprecated; not ours to fix, and it must
    # not turn into an error where warnings are errors (the tests).
    warnings.simplefilter("ignore", DeprecationWarning)
    import ldap3
    from ldap3.core.exceptions import LDAPException
    from ldap3.utils.conv import escape_filter_chars
    from ldap3.utils.dn import escape_rdn

from ..config.model import LdapSettings
from ..identify.names import normalise_user
from ..identify.passwords import CredentialCache

__all__ = ["DirectoryUnavailable", "LdapDirectory"]

log = logging.getLogger("schoolgate.ldap")

Clock = Callable[[], float]


class DirectoryUnavailable(Exception):
    """The directory server could not be asked (down, unreachable, TLS or service-account
    failure). Nothing was cached; the question is asked again next time. The message says why."""


def normalise_dn(dn: str) -> str:
    """Compare DNs as directories do for these attributes: case and spaces around separators do
    not matter. (ldap3's `parse_dn` refuses ``cn=ks3, ou=groups``, as people write DNs.)"""
    rdns, current, escaped = [], [], False
    for ch in dn:
        if escaped or ch != ",":
            current.append(ch)
            escaped = not escaped and ch == "\\"
        else:
            rdns.append("".join(current))
            current = []
    rdns.append("".join(current))
    out = []
    for rdn in rdns:
        attribute, _, value = rdn.partition("=")
        out.append(f"{attribute.strip().lower()}={value.strip().lower()}")
    return ",".join(out)


def _group_names(dns: frozenset[str]) -> set[str]:
    """Every DN, and the cn of each group whose first RDN is a cn, for matching the mapping."""
    names = set(dns)
    for dn in dns:
        first = dn.split(",", 1)[0]
        if first.startswith("cn="):
            names.add(first[3:])
    return names


class LdapDirectory:
    """Logins and group membership from an LDAP directory, with a cache in front of both."""

    def __init__(self, settings: LdapSettings, *, clock: Clock = time.monotonic):
        self.settings = settings
        self.clock = clock
        self.logins = CredentialCache(settings.cache_seconds, settings.cache_size, clock)
        self._mapping = [(normalise_dn(k) if "=" in k else k.strip().lower(), group)
                         for k, group in settings.group_mapping]
        # user -> (expires, directory groups, Schoolgate group)
        self._groups: dict[str, tuple[float, frozenset[str], str | None]] = {}
        self._lock = threading.Lock()
        self._tls = None
        if settings.url.lower().startswith("ldaps://") or settings.start_tls:
            self._tls = _CheckedTls(ldap3.Server(settings.url).host, settings.ca_file)

    # -- per request: memory only -----------------------------------------------------------------

    def recently_verified(self, user: str, password: str) -> bool:
        """True when this login bound successfully less than `cache_seconds` ago. No I/O."""
        try:
            return bool(password) and self.logins.hit(normalise_user(user), password)
        except ValueError:
            return False

    def cached_groups(self, user: str) -> frozenset[str] | None:
        """The user's directory groups (normalised DNs) if known and fresh, else None. No I/O."""
        entry = self._fresh(user)
        return entry[1] if entry else None

    def cached_group(self, user: str) -> str | None:
        """The Schoolgate group the mapping gives the user, from the cache only (None when the
        user is in no mapped group, or not looked up recently: see `groups_of`). No I/O."""
        entry = self._fresh(user)
        return entry[2] if entry else None

    def schoolgate_group(self, ldap_groups: frozenset[str]) -> str | None:
        """The first mapped Schoolgate group among `ldap_groups` (normalised DNs), or None."""
        names = _group_names(ldap_groups)
        for key, group in self._mapping:
            if key in names:
                return group
        return None

    def _fresh(self, user: str) -> tuple[float, frozenset[str], str | None] | None:
        try:
            entry = self._groups.get(normalise_user(user))
        except ValueError:
            return None
        return entry if entry and self.clock() < entry[0] else None

    # -- blocking: run these in a worker thread ---------------------------------------------------

    def authenticate(self, user: str, password: str) -> bool:
        """Check a login by binding to the directory as the user; on success also look up and
        cache the user's groups. Never binds with an empty password: most servers treat a DN
        with no password as an anonymous bind and report success (RFC 4513 5.1.2)."""
        if not password:
            return False
        try:
            name = normalise_user(user)
        except ValueError:
            return False
        if self.logins.hit(name, password):
            return True
        service = bound = None
        try:
            service = self._service_connection()
            dn = self._user_dn(name, service)
            if dn is None:
                hint = "" if service else " (or anonymous search is not allowed: set service_dn)"
                log.info("LDAP login refused for %r: no such user%s", name, hint)
                return False
            bound = self._connection(dn, password)
            if not bound.bind():
                log.info("LDAP login refused for %r: %s", name, bound.result.get("description"))
                return False
            self.logins.remember(name, password)
            try:
                self._remember_groups(name, self._search_groups(service or bound, name, dn))
            except Exception as e:  # noqa: BLE001 - the login stands; the groups wait
                log.warning("LDAP groups of %r could not be read (%s); they will be asked "
                            "for again", name, _reason(e))
            return True
        except Exception as e:  # noqa: BLE001 - whatever went wrong, the login is refused
            log.warning("LDAP login for %r could not be checked: %s", name, _reason(e))
            return False
        finally:
            _close(bound)
            _close(service)

    def groups_of(self, user: str) -> frozenset[str]:
        """The user's directory groups (normalised DNs), from the cache or, as the service
        account, from the server; empty for a user the directory does not know. For users known
        only from the IP map (a login caches its groups). Raises DirectoryUnavailable, and
        ValueError for a name that is not a username."""
        name = normalise_user(user)
        entry = self._fresh(name)
        if entry:
            return entry[1]
        if self.settings.service_dn is None:
            # Anonymously, a directory that hides entries answers "no groups" rather than "not
            # allowed", and every user would silently get their subnet's policy.
            raise DirectoryUnavailable("looking up the groups of a user who has not logged in "
                                       "needs a service account (service_dn)")
        service = None
        try:
            service = self._service_connection()
            if service is None:
                raise DirectoryUnavailable("LDAP lookups need a service account (service_dn)")
            dn = self._user_dn(name, service)
            groups = frozenset() if dn is None else self._search_groups(service, name, dn)
        except DirectoryUnavailable:
            raise
        except Exception as e:  # noqa: BLE001 - ldap3 raises more than LDAPException
            raise DirectoryUnavailable(_reason(e)) from None
        finally:
            _close(service)
        self._remember_groups(name, groups)
        return groups

    # -- plumbing ---------------------------------------------------------------------------------

    def _connection(self, dn: str | None, password: str | None) -> ldap3.Connection:
        # A Server per connection: ldap3 records the address it reached on the Server object,
        # and threads sharing one would read each other's.
        server = ldap3.Server(self.settings.url, connect_timeout=self.settings.timeout,
                              get_info=ldap3.NONE, tls=self._tls)
        # ldap3 packs the receive timeout as a whole number of seconds.
        conn = ldap3.Connection(server, user=dn, password=password, read_only=True,
                                receive_timeout=math.ceil(self.settings.timeout),
                                raise_exceptions=False)
        try:
            conn.open(read_server_info=False)
            if self.settings.start_tls and not conn.start_tls(read_server_info=False):
                raise DirectoryUnavailable(f"StartTLS refused: {conn.result.get('description')}")
        except BaseException:
            _close(conn)
            raise
        return conn

    def _service_connection(self) -> ldap3.Connection | None:
        s = self.settings
        if s.service_dn is None:
            return None
        conn = self._connection(s.service_dn, s.service_password)
        if not conn.bind():
            description = conn.result.get("description")
            _close(conn)
            raise DirectoryUnavailable(f"service account {s.service_dn} cannot bind: "
                                       f"{description}")
        return conn

    def _user_dn(self, name: str, conn: ldap3.Connection | None) -> str | None:
        s = self.settings
        if s.user_dn_template is not None:
            return s.user_dn_template.replace("{user}", escape_rdn(name))
        if conn is None:
            conn = self._connection(None, None)  # anonymous search
            try:
                return self._find_user(conn, name)
            finally:
                _close(conn)
        return self._find_user(conn, name)

    def _find_user(self, conn: ldap3.Connection, name: str) -> str | None:
        s = self.settings
        if s.user_search_base is None:
            raise DirectoryUnavailable("LDAP user search needs user_search_base")
        query = s.user_filter.replace("{user}", escape_filter_chars(name))
        conn.search(s.user_search_base, query, ldap3.SUBTREE, attributes=[], size_limit=2)
        _check(conn, "user search", allow=("success", "sizeLimitExceeded", "noSuchObject"))
        found = _entries(conn)
        if len(found) > 1:
            log.warning("LDAP: more than one entry below %s matches %s; refusing %r",
                        s.user_search_base, query, name)
            return None
        return found[0]["dn"] if found else None

    def _search_groups(self, conn: ldap3.Connection, name: str, dn: str) -> frozenset[str]:
        s = self.settings
        if s.group_search_base is None:
            # UPN templates (user@domain) are not DNs; the entry is found by searching for it.
            if "=" not in dn:
                return frozenset()
            conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=["memberOf"])
            _check(conn, "memberOf read", allow=("success", "noSuchObject"))
            values: list[Any] = []
            for entry in _entries(conn):
                values += entry.get("attributes", {}).get("memberOf", [])
            return frozenset(normalise_dn(str(v)) for v in values)
        query = (s.group_filter.replace("{dn}", escape_filter_chars(dn))
                 .replace("{user}", escape_filter_chars(name)))
        conn.search(s.group_search_base, query, ldap3.SUBTREE, attributes=[])
        _check(conn, "group search", allow=("success", "noSuchObject"))
        return frozenset(normalise_dn(e["dn"]) for e in _entries(conn))

    def _remember_groups(self, name: str, groups: frozenset[str]) -> None:
        entry = (self.clock() + self.settings.cache_seconds, groups, self.schoolgate_group(groups))
        with self._lock:
            self._groups.pop(name, None)
            self._groups[name] = entry
            while len(self._groups) > self.settings.cache_size:
                del self._groups[next(iter(self._groups))]


class _CheckedTls(ldap3.Tls):
    """TLS whose certificate check is Python's own (chain, expiry, name, IP addresses included).
    ldap3's check compares DNS names only, and leaves the socket open when a check fails."""

    def __init__(self, host: str, ca_file: Path | None):
        super().__init__(validate=ssl.CERT_REQUIRED)
        self._host = host
        self._context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)

    def wrap_socket(self, connection: ldap3.Connection, do_handshake: bool = False) -> None:
        # Handshake now, whatever ldap3 asked: the check must pass before anything is sent.
        # On failure the SSL socket closes itself, and the plain one was handed over to it.
        connection.socket = self._context.wrap_socket(
            connection.socket, server_hostname=self._host, do_handshake_on_connect=True)


def _entries(conn: ldap3.Connection) -> list[dict[str, Any]]:
    return [r for r in conn.response or () if r.get("type") == "searchResEntry"]


def _check(conn: ldap3.Connection, what: str, allow: tuple[str, ...]) -> None:
    description = conn.result.get("description") if conn.result else "no answer"
    if description not in allow:
        raise DirectoryUnavailable(f"{what} failed: {description}")


def _reason(e: Exception) -> str:
    # ldap3 wraps messages in the repr of tuples: ("('socket ssl wrapping error: ...',)",)
    return str(e).strip("()'\", ") or type(e).__name__


def _close(conn: ldap3.Connection | None) -> None:
    """Close a connection whatever state it is in: ldap3 leaves the socket of a failed connect
    open (and `unbind` does nothing for a connection it thinks is closed)."""
    if conn is None:
        return
    with contextlib.suppress(LDAPException, OSError):
        conn.unbind()
    sock = getattr(conn, "socket", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()

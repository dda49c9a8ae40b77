"""Proxy logins checked against the users of an Apache htpasswd file, the cache that spares every
request from a slow password check (bcrypt costs tens of milliseconds; an LDAP bind a network round
trip), and the Basic proxy login header. Pure: `schoolgate.sources.identity` reads the file.

mitmproxy's own `mitmproxy.utils.htpasswd` is not reused: it refuses a whole file for one bad
line, cannot read Apache's default `$apr1$` hashes, compares `{SHA}` digests in variable time,
and with bcrypt 5 raises instead of answering for passwords longer than 72 bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping

import bcrypt

__all__ = ["CredentialCache", "HtpasswdUsers", "apr1_md5", "hash_problem", "parse_basic_auth"]

Clock = Callable[[], float]

_BCRYPT = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
_APR1 = re.compile(r"\$apr1\$([./A-Za-z0-9]{1,8})\$[./A-Za-z0-9]{22}")
_SHA = re.compile(r"\{SHA\}[A-Za-z0-9+/]{27}=")
_ITOA64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def parse_basic_auth(value: str) -> tuple[str, str] | None:
    """``(user, password)`` from a ``Basic`` (Proxy-)Authorization header value, or None when it
    is anything else. The password may contain ``:`` (RFC 7617 splits at the first one only;
    mitmproxy's `parse_http_basic_auth` refuses such passwords)."""
    scheme, _, encoded = value.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, colon, password = decoded.partition(":")
    if not colon or not user:
        return None
    return user, password


class CredentialCache:
    """Remembers, for `seconds`, user/password pairs that were verified, so a browser that sends
    its proxy login with every request costs one slow check every few minutes, not one per request.

    Entries are keyed by an HMAC of user and password under a key made at start-up, so neither is
    kept in memory in a form that can be read back or guessed offline. A password changed in the
    directory still works here until its entry expires; `clear()` forgets everything at once.
    """

    def __init__(self, seconds: float = 300.0, max_entries: int = 10_000,
                 clock: Clock = time.monotonic):
        self.seconds = seconds
        self.max_entries = max_entries
        self.clock = clock
        self._secret = secrets.token_bytes(32)
        self._expiry: dict[bytes, float] = {}
        # Checks run in worker threads (`asyncio.to_thread`); evicting while another thread
        # inserts would otherwise race.
        self._lock = threading.Lock()

    def _key(self, user: str, password: str) -> bytes:
        message = user.encode("utf-8", "surrogatepass") + b"\0" + password.encode(
            "utf-8", "surrogatepass")
        return hmac.new(self._secret, message, hashlib.sha256).digest()

    def hit(self, user: str, password: str) -> bool:
        """True when this pair was verified less than `seconds` ago. No I/O."""
        expires = self._expiry.get(self._key(user, password))
        return expires is not None and self.clock() < expires

    def remember(self, user: str, password: str) -> None:
        if self.seconds <= 0:
            return
        key = self._key(user, password)
        now = self.clock()
        with self._lock:
            self._expiry.pop(key, None)  # re-insert at the end: eviction drops the oldest first
            self._expiry[key] = now + self.seconds
            if len(self._expiry) > self.max_entries:
                for stale in [k for k, t in self._expiry.items() if t <= now]:
                    del self._expiry[stale]
                while len(self._expiry) > self.max_entries:
                    del self._expiry[next(iter(self._expiry))]

    def clear(self) -> None:
        with self._lock:
            self._expiry.clear()

    def __len__(self) -> int:
        return len(self._expiry)


def apr1_md5(password: bytes, salt: bytes) -> str:
    """Apache's ``$apr1$`` hash (1000 rounds of MD5), the default of `htpasswd` without ``-B``.
    Weak by today's standards; read so that existing files keep working."""
    final = hashlib.md5(password + salt + password).digest()  # noqa: S324 - reading apr1 htpasswd files
    ctx = password + b"$apr1$" + salt
    for left in range(len(password), 0, -16):
        ctx += final[:min(16, left)]
    i = len(password)
    while i:
        ctx += b"\0" if i & 1 else password[:1]
        i >>= 1
    final = hashlib.md5(ctx).digest()  # noqa: S324 - reading apr1 htpasswd files
    for i in range(1000):
        round_ = (password if i & 1 else final) + (salt if i % 3 else b"")
        round_ += (password if i % 7 else b"") + (final if i & 1 else password)
        final = hashlib.md5(round_).digest()  # noqa: S324 - reading apr1 htpasswd files
    out = []
    for a, b, c in ((0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)):
        v = final[a] << 16 | final[b] << 8 | final[c]
        out += [_ITOA64[(v >> s) & 0x3F] for s in (0, 6, 12, 18)]
    v = final[11]
    out += [_ITOA64[v & 0x3F], _ITOA64[(v >> 6) & 0x3F]]
    return f"$apr1${salt.decode('ascii')}${''.join(out)}"


def _matches(stored: str, password: str) -> bool:
    secret = password.encode("utf-8", "surrogatepass")
    if stored.startswith("$2"):
        # Apache (like every bcrypt before version 5 of the Python library) uses only the first
        # 72 bytes; bcrypt 5 raises instead, which would lock out users with long passwords.
        return bcrypt.checkpw(secret[:72], stored.encode("ascii"))
    if stored.startswith("{SHA}"):
        digest = base64.b64encode(hashlib.sha1(secret).digest()).decode("ascii")  # noqa: S324 - reading {SHA} htpasswd files
        return hmac.compare_digest(stored[5:], digest)
    m = _APR1.fullmatch(stored)
    if m is None:  # hash_problem refuses such a hash before it is stored
        return False
    return hmac.compare_digest(stored, apr1_md5(secret, m[1].encode("ascii")))


def hash_problem(stored: str) -> str | None:
    """Why the stored password hash `stored` cannot be used, or None if it can."""
    if _BCRYPT.fullmatch(stored) or _APR1.fullmatch(stored) or _SHA.fullmatch(stored):
        return None
    if stored.startswith(("$2", "$apr1$", "{SHA}")):
        return "the password hash is damaged (cut short or edited?); set the password again"
    return ("the password is not stored as bcrypt, $apr1$ or {SHA} (crypt() and plain text are "
            "not accepted); set it again with: htpasswd -B FILE USER")


class HtpasswdUsers:
    """The users of an Apache htpasswd file (``user:hash`` per line), as written by `htpasswd`:
    bcrypt (``-B``, recommended), ``$apr1$`` MD5 (its default) and ``{SHA}`` (``-s``, unsalted).

    Usernames match exactly, as in Apache. An empty password is always refused. Verified logins are
    remembered in a `CredentialCache` for `cache_seconds`; `replace()` forgets them. The file
    itself is read by `schoolgate.sources.identity.HtpasswdFileUsers`.
    """

    def __init__(self, users: Mapping[str, str] | None = None, *, cache_seconds: float = 300.0,
                 cache_size: int = 10_000, clock: Clock = time.monotonic):
        self._users: dict[str, str] = {}
        self.cache = CredentialCache(cache_seconds, cache_size, clock)
        if users:
            self.replace(users)

    def replace(self, users: Mapping[str, str]) -> None:
        """Swap in `users` (``{user: stored hash}``) whole and forget every remembered login (a
        password may have been changed). Raises ValueError for a hash `hash_problem` refuses,
        and then nothing changes."""
        for user, stored in users.items():
            if problem := hash_problem(stored):
                raise ValueError(f"user {user!r}: {problem}")
        self._users = dict(users)
        self.cache.clear()

    def recently_verified(self, user: str, password: str) -> bool:
        """True when this login was checked successfully less than `cache_seconds` ago. No I/O
        and no hashing beyond one HMAC: safe to call on the event loop for every request."""
        return bool(password) and self.cache.hit(user, password)

    def authenticate(self, user: str, password: str) -> bool:
        """Check a login. A cache miss costs a bcrypt check (tens of milliseconds of CPU): call it
        from a worker thread (`asyncio.to_thread`) unless `recently_verified` said yes."""
        if not password:
            return False
        if self.cache.hit(user, password):
            return True
        stored = self._users.get(user)
        if stored is None or not _matches(stored, password):
            return False
        self.cache.remember(user, password)
        return True

    def __contains__(self, user: object) -> bool:
        return user in self._users

    def __len__(self) -> int:
        return len(self._users)

"""Identification sources: htpasswd logins, LDAP logins and groups (against a real slapd), the IP
map with expiry, the device map, user groups, and the identifier that applies them in order.

Time is a `FakeClock` everywhere an expiry matters: nothing here sleeps or reads the wall clock.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import math
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
from mitmproxy.utils.htpasswd import HtpasswdFile

from sample_school import REPO
from schoolgate.config.model import Config, LdapSettings
from schoolgate.identify import Identity, SubnetGroups
from schoolgate.identify.identifier import Identifier, IdentitySources
from schoolgate.identify.maps import (
    MAX_TTL,
    DeviceMap,
    FileSummary,
    IpUserMap,
    UserGroups,
    ip_map_entries,
)
from schoolgate.identify.names import login_name, normalise_mac, normalise_user
from schoolgate.identify.passwords import HtpasswdUsers, apr1_md5, parse_basic_auth
from schoolgate.sources.identity import (
    HtpasswdFileUsers,
    load_devices,
    load_ip_map,
    load_user_groups,
)
from schoolgate.sources.ldap import DirectoryUnavailable, LdapDirectory
from schoolgate.sources.tables import IdentityFileError

# tests/ holds helpers shared by the unit and end-to-end tests (ldap_server.py).
TESTS = str(REPO / "tests")
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)

import ldap_server  # noqa: E402
from ldap_server import BASE_DN, SERVICE_DN, SERVICE_PASSWORD, Slapd, running_slapd  # noqa: E402


class FakeClock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self, now: float = 10_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def problems(summary) -> list[str]:
    return [str(p) for p in summary.problems]


# ---------------------------------------------------------------------------------------------
# Names


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("alice", "alice"),
        # Case does not matter to Windows, so it does not matter here.
        ("Alice", "alice"),
        ("ALICE ", "alice"),
        # RADIUS and logon scripts: DOMAIN\user; Azure AD and Google: user@domain.
        ("SCHOOL\\Alice", "alice"),
        ("alice@school.example", "alice"),
        ("SCHOOL\\alice@school.example", "alice"),
        # Unicode compared in one form (NFC): "é" composed and decomposed are one name.
        ("Ren\u0065\u0301", "ren\u00e9"),
        ("o'neill", "o'neill"),
    ],
)
def test_normalise_user(given, expected):
    assert normalise_user(given) == expected


@pytest.mark.parametrize("given", ["", "   ", "SCHOOL\\", "@school.example",
                                   "ali\nce", "bob\x00", "x" * 257])
def test_normalise_user_refuses(given):
    with pytest.raises(ValueError):
        normalise_user(given)


@pytest.mark.parametrize(
    "given",
    ["aa:bb:cc:dd:ee:0f", "AA-BB-CC-DD-EE-0F", "aabb.ccdd.ee0f", "AABBCCDDEE0F",
     " aa:bb:cc:dd:ee:0f "],
)
def test_normalise_mac(given):
    assert normalise_mac(given) == "aa:bb:cc:dd:ee:0f"


@pytest.mark.parametrize("given", ["", "aa:bb:cc:dd:ee", "aa:bb:cc:dd:ee:ff:00",
                                   "aa-bb:cc-dd:ee-ff", "aabb.ccdd", "gg:bb:cc:dd:ee:ff",
                                   "a:bb:cc:dd:ee:fff"])
def test_normalise_mac_refuses(given):
    with pytest.raises(ValueError):
        normalise_mac(given)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (basic("alice", "pw"), ("alice", "pw")),
        # RFC 7617: the user cannot contain ':', the password can.
        (basic("alice", "a:b:c"), ("alice", "a:b:c")),
        (basic("alice", ""), ("alice", "")),
        (basic("zoë", "pässword"), ("zoë", "pässword")),
        ("basic " + base64.b64encode(b"bob:x").decode(), ("bob", "x")),
        # Anything else is no login at all.
        ("Bearer abc", None),
        ("Basic", None),
        ("Basic !!!notbase64", None),
        ("Basic " + base64.b64encode(b"no-colon").decode(), None),
        ("Basic " + base64.b64encode(b":password").decode(), None),
        ("Basic " + base64.b64encode(b"\xff\xfe:x").decode(), None),
    ],
)
def test_parse_basic_auth(header, expected):
    assert parse_basic_auth(header) == expected


# ---------------------------------------------------------------------------------------------
# htpasswd


def sha_hash(password: str) -> str:
    return "{SHA}" + base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()


def bcrypt_hash(password: str | bytes, prefix: str = "$2y$") -> str:
    secret = password.encode() if isinstance(password, str) else password
    made = bcrypt.hashpw(secret, bcrypt.gensalt(rounds=4)).decode()
    return prefix + made[4:]  # Apache's htpasswd -B writes $2y$; the library writes $2b$


#: Made by `openssl passwd -apr1 -salt abcdefgh secret`: an implementation independent of ours.
APR1_SECRET = "$apr1$abcdefgh$h9FWgUz3n9YxylKLlR5SQ/"


@pytest.fixture
def htpasswd(tmp_path: Path) -> Path:
    return write(tmp_path, "users.htpasswd", "\n".join([
        "# staff logins",
        f"amy:{bcrypt_hash('amy-pw')}",
        f"ben:{bcrypt_hash('ben-pw', '$2b$')}",
        f"cat:{sha_hash('cat-pw')}",
        f"dan:{APR1_SECRET}",
        "",
    ]))


@pytest.mark.parametrize(
    ("user", "password", "ok"),
    [
        ("amy", "amy-pw", True),  # bcrypt $2y$, as Apache writes it
        ("ben", "ben-pw", True),  # bcrypt $2b$
        ("cat", "cat-pw", True),  # {SHA}
        ("dan", "secret", True),  # $apr1$, Apache's default
        ("amy", "wrong", False),
        ("cat", "wrong", False),
        ("dan", "Secret", False),
        ("amy", "", False),
        ("Amy", "amy-pw", False),  # as in Apache, usernames match exactly
        ("nobody", "amy-pw", False),
    ],
)
def test_htpasswd_logins(htpasswd, user, password, ok):
    users = HtpasswdFileUsers(htpasswd)
    assert users.authenticate(user, password) is ok
    assert users.recently_verified(user, password) is ok


def test_htpasswd_agrees_with_mitmproxy_where_both_read_the_file(htpasswd, tmp_path):
    # mitmproxy's own parser reads bcrypt and {SHA}; on those, the answers must be the same.
    shared = write(tmp_path, "shared", "\n".join(
        line for line in htpasswd.read_text().splitlines() if "$apr1$" not in line))
    theirs = HtpasswdFile.from_file(shared)
    ours = HtpasswdFileUsers(shared)
    for user in ("amy", "ben", "cat"):
        for password in (f"{user}-pw", "wrong"):
            assert ours.authenticate(user, password) == theirs.check_password(user, password)


@pytest.mark.parametrize("password", ["", "x", "a" * 40, "päss:wörd", "p" * 17])
def test_apr1_matches_openssl(password):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    made = subprocess.run(["openssl", "passwd", "-apr1", "-salt", "Zz./9q", password],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert apr1_md5(password.encode(), b"Zz./9q") == made


def test_htpasswd_bcrypt_uses_the_first_72_bytes_like_apache(tmp_path):
    # Apache hashes only 72 bytes; bcrypt 5 raises for longer passwords instead of checking them.
    long_password = "correct horse battery staple " * 4  # 116 bytes
    path = write(tmp_path, "h", f"eve:{bcrypt_hash(long_password.encode()[:72])}\n")
    users = HtpasswdFileUsers(path)
    assert users.authenticate("eve", long_password)
    assert not users.authenticate("eve", long_password[:71])


def test_htpasswd_empty_password_refused_even_if_hashed(tmp_path):
    path = write(tmp_path, "h", f"kim:{bcrypt_hash('')}\nlee:{sha_hash('')}\n")
    users = HtpasswdFileUsers(path)
    assert len(users) == 2
    assert not users.authenticate("kim", "")
    assert not users.authenticate("lee", "")


def test_htpasswd_bad_lines_are_reported_and_skipped(tmp_path):
    good = bcrypt_hash("pw")
    path = write(tmp_path, "users.htpasswd", "\n".join([
        "# comment",                          # 1
        "no-colon-here",                      # 2
        f":{good}",                           # 3
        "plain:secret",                       # 4 plain text (or crypt)
        f"cut:{good[:-5]}",                   # 5 damaged bcrypt
        "sha:{SHA}tooshort",                  # 6 damaged SHA
        f"ok:{good}",                         # 7
        f"ok:{sha_hash('other')}",            # 8 duplicate: Apache keeps the first
        f"extra:{good}:comment field",        # 9 further fields are ignored
    ]).encode() + b"\nbad\xff:x\n")           # 10 not UTF-8
    users = HtpasswdFileUsers(path)
    assert problems(users.summary) == [
        f"{path}:2: not USER:PASSWORD-HASH (no ':'); line skipped",
        f"{path}:3: no username before the ':'; line skipped",
        f"{path}:4: user 'plain': the password is not stored as bcrypt, $apr1$ or {{SHA}} "
        "(crypt() and plain text are not accepted); set it again with: htpasswd -B FILE USER; "
        "line skipped",
        f"{path}:5: user 'cut': the password hash is damaged (cut short or edited?); set the "
        "password again; line skipped",
        f"{path}:6: user 'sha': the password hash is damaged (cut short or edited?); set the "
        "password again; line skipped",
        f"{path}:8: user 'ok' is already on line 7; line skipped",
        f"{path}:10: not valid UTF-8; line skipped",
    ]
    assert str(users.summary) == f"{path}: 2 entries, 7 bad lines skipped"
    assert users.authenticate("ok", "pw") and not users.authenticate("ok", "other")
    assert users.authenticate("extra", "pw")
    assert "plain" not in users and "cut" not in users


def test_htpasswd_reload_swaps_and_forgets_logins(tmp_path):
    clock = FakeClock()
    path = write(tmp_path, "h", f"amy:{bcrypt_hash('old')}\n")
    users = HtpasswdFileUsers(path, clock=clock)
    assert users.authenticate("amy", "old")
    path.write_text(f"amy:{bcrypt_hash('new')}\nbob:{sha_hash('b')}\n")
    summary = users.reload()
    assert summary.entries == 2
    assert not users.recently_verified("amy", "old")
    assert not users.authenticate("amy", "old")
    assert users.authenticate("amy", "new") and users.authenticate("bob", "b")


def test_htpasswd_unreadable_file_keeps_the_old_users(tmp_path):
    path = write(tmp_path, "h", f"amy:{sha_hash('a')}\n")
    users = HtpasswdFileUsers(path)
    path.unlink()
    with pytest.raises(IdentityFileError, match=f"^{path}: file not found$"):
        users.reload()
    assert users.authenticate("amy", "a")
    with pytest.raises(IdentityFileError, match="is a directory"):
        HtpasswdFileUsers(tmp_path)


def test_htpasswd_cache_expires(tmp_path, monkeypatch):
    clock = FakeClock()
    path = write(tmp_path, "h", f"amy:{bcrypt_hash('pw')}\n")
    users = HtpasswdFileUsers(path, cache_seconds=60, clock=clock)
    checks = []
    real = bcrypt.checkpw
    monkeypatch.setattr(bcrypt, "checkpw", lambda *a: checks.append(1) or real(*a))
    assert users.authenticate("amy", "pw") and len(checks) == 1
    clock.advance(59)
    # Within the minute: remembered, no second bcrypt check.
    assert users.recently_verified("amy", "pw")
    assert users.authenticate("amy", "pw") and len(checks) == 1
    # A wrong password is never remembered.
    assert not users.recently_verified("amy", "wrong")
    clock.advance(1)
    assert not users.recently_verified("amy", "pw")
    assert users.authenticate("amy", "pw") and len(checks) == 2


def test_htpasswd_users_filled_in_memory():
    clock = FakeClock()
    users = HtpasswdUsers({"amy": sha_hash("a")}, clock=clock)
    assert users.authenticate("amy", "a") and users.recently_verified("amy", "a")
    # A refused hash refuses the whole replacement; a replacement forgets remembered logins.
    with pytest.raises(ValueError, match="user 'bob': the password is not stored as bcrypt"):
        users.replace({"amy": sha_hash("b"), "bob": "plain"})
    assert users.recently_verified("amy", "a")
    users.replace({"amy": sha_hash("b")})
    assert not users.recently_verified("amy", "a") and not users.authenticate("amy", "a")
    assert users.authenticate("amy", "b") and len(users) == 1


def test_credential_cache_is_bounded(tmp_path):
    path = write(tmp_path, "h", "".join(f"u{i}:{sha_hash(str(i))}\n" for i in range(5)))
    users = HtpasswdFileUsers(path, cache_size=3, clock=FakeClock())
    for i in range(5):
        assert users.authenticate(f"u{i}", str(i))
    assert len(users.cache) == 3
    # The oldest went first.
    assert [users.recently_verified(f"u{i}", str(i)) for i in range(5)] == [
        False, False, True, True, True]


# ---------------------------------------------------------------------------------------------
# CSV files


def test_csv_header_is_required(tmp_path):
    path = write(tmp_path, "map.csv", "10.0.0.1,alice\n")
    with pytest.raises(IdentityFileError, match=rf"^{path}:1: the first line must be a header "
                                                r"naming the columns ip,user,ttl_seconds "
                                                r"\(optional: ttl_seconds\); this one has no "
                                                r"ip, user column$"):
        load_ip_map(IpUserMap(), path)
    with pytest.raises(IdentityFileError, match=f"^{path}: empty"):
        load_ip_map(IpUserMap(), write(tmp_path, "map.csv", "# nothing yet\n\n"))
    with pytest.raises(IdentityFileError, match="file not found"):
        load_ip_map(IpUserMap(), tmp_path / "missing.csv")


def test_csv_as_excel_and_mis_exports_write_it(tmp_path):
    # A byte-order mark, CRLF line ends, quoted cells, columns in another order, columns we do
    # not use, upper-case header names, and comments.
    path = write(tmp_path, "groups.csv", (
        "\ufeffForename,GROUP,User\r\n"
        "# exported from the MIS\r\n"
        '"Smith, Jo",ks3,"SCHOOL\\JSmith"\r\n'
        "\r\n"
        "Ann,staff,ann@school.example\r\n"
    ).encode("utf-8"))
    groups = UserGroups()
    summary = load_user_groups(groups, path)
    assert problems(summary) == []
    assert summary.entries == 2
    assert groups.group_of("jsmith") == "ks3"
    assert groups.group_of("ANN") == "staff"


def test_csv_broken_quotes(tmp_path):
    path = write(tmp_path, "g.csv", 'user,group\n"bad"x,ks3\nann,staff\nbob,"ks3\ncat,ks3\n')
    groups = UserGroups()
    summary = load_user_groups(groups, path)
    assert problems(summary) == [
        f"{path}:2: not valid CSV (',' expected after '\"'); line skipped",
        f"{path}:4: not valid CSV (unexpected end of data): a quote opened on this line is "
        "never closed, so the rest of the file was not read; line skipped",
    ]
    assert groups.group_of("ann") == "staff"


# ---------------------------------------------------------------------------------------------
# IP -> user map


def test_ip_map_entries_expire_after_their_ttl():
    clock = FakeClock()
    ips = IpUserMap(clock=clock)
    ips.set("10.20.1.7", "SCHOOL\\Alice", ttl=3600)
    assert ips.get("10.20.1.7") == "alice"
    clock.advance(3599)
    assert ips.get("10.20.1.7") == "alice"
    clock.advance(1)
    assert ips.get("10.20.1.7") is None
    # `now` may also be passed in explicitly.
    assert ips.get("10.20.1.7", now=clock.now - 10) == "alice"
    assert len(ips) == 1
    assert ips.purge() == 1
    assert len(ips) == 0


def test_ip_map_normalises_addresses():
    ips = IpUserMap(clock=FakeClock())
    ips.set("::ffff:10.20.1.7", "alice", 60)
    assert ips.get("10.20.1.7") == "alice"
    ips.set("FD00:30:0::1", "bob", 60)
    assert ips.get("fd00:30::1") == "bob"
    assert ips.get("fd00:30::1%eth0") == "bob"
    assert ips.get("not an ip") is None


@pytest.mark.parametrize(
    ("ip", "user", "ttl", "message"),
    [
        ("10.0.0.300", "alice", 60, "does not appear to be an IPv4 or IPv6 address"),
        ("10.0.0.1", "", 60, "is not a username"),
        ("10.0.0.1", "alice", 0, "ttl must be from 1 to 604800"),
        ("10.0.0.1", "alice", 604801, "ttl must be from 1 to 604800"),
        ("10.0.0.1", "alice", True, "ttl must be"),
    ],
)
def test_ip_map_set_refuses(ip, user, ttl, message):
    ips = IpUserMap(clock=FakeClock())
    with pytest.raises(ValueError, match=message):
        ips.set(ip, user, ttl)
    assert len(ips) == 0


def test_ip_map_a_late_logoff_does_not_end_the_next_session():
    ips = IpUserMap(clock=FakeClock())
    ips.set("10.0.0.5", "alice", 600)
    ips.set("10.0.0.5", "bob", 600)  # bob logged on at the same PC
    assert not ips.forget("10.0.0.5", "alice")  # alice's logoff arrives late
    assert ips.get("10.0.0.5") == "bob"
    assert ips.forget("10.0.0.5", "SCHOOL\\Bob")
    assert ips.get("10.0.0.5") is None
    assert not ips.forget("10.0.0.5")


def test_ip_map_is_bounded_and_drops_expired_then_oldest():
    clock = FakeClock()
    ips = IpUserMap(max_entries=3, clock=clock)
    ips.set("10.0.0.1", "a", 10)
    ips.set("10.0.0.2", "b", 1000)
    ips.set("10.0.0.3", "c", 1000)
    clock.advance(20)  # a has expired
    ips.set("10.0.0.4", "d", 1000)
    assert [ips.get(f"10.0.0.{i}") for i in range(1, 5)] == [None, "b", "c", "d"]
    ips.set("10.0.0.2", "b", 1000)  # refreshed: now the newest
    ips.set("10.0.0.5", "e", 1000)  # full, nothing expired: the least recently updated goes
    assert [ips.get(f"10.0.0.{i}") for i in range(2, 6)] == ["b", None, "d", "e"]
    assert len(ips) == 3


def test_ip_map_csv(tmp_path):
    clock = FakeClock()
    path = write(tmp_path, "ipmap.csv", "\n".join([
        "ip,user,ttl_seconds",           # 1
        "10.20.1.1,alice,",              # 2 no TTL: never expires
        "10.20.1.2,SCHOOL\\Bob,60",      # 3
        "::ffff:10.20.1.3,carol",        # 4 a short row: TTL left out
        "10.20.1.300,dave,60",           # 5
        "10.20.1.4,,60",                 # 6
        "10.20.1.5,erin,0",              # 7
        "10.20.1.6,erin,soon",           # 8
        "10.20.1.1,frank,60",            # 9 duplicate IP
        "10.20.1.7",                     # 10 no user cell
    ]))
    ips = IpUserMap(clock=clock)
    summary = load_ip_map(ips, path)
    assert problems(summary) == [
        f"{path}:5: ip: '10.20.1.300' is not an IP address; line skipped",
        f"{path}:6: no user in this row; line skipped",
        f"{path}:7: ttl_seconds: must be a whole number from 1 to 604800, or empty for no "
        "expiry, not '0'; line skipped",
        f"{path}:8: ttl_seconds: must be a whole number from 1 to 604800, or empty for no "
        "expiry, not 'soon'; line skipped",
        f"{path}:9: ip 10.20.1.1 is already on line 2; line skipped",
        f"{path}:10: no user in this row; line skipped",
    ]
    assert summary.entries == 3
    assert [ips.get(f"10.20.1.{i}") for i in (1, 2, 3)] == ["alice", "bob", "carol"]
    clock.advance(60)
    assert [ips.get(f"10.20.1.{i}") for i in (1, 2, 3)] == ["alice", None, "carol"]


def test_ip_map_pushed_entries_win_over_the_csv_until_they_expire(tmp_path):
    clock = FakeClock()
    ips = IpUserMap(clock=clock)
    load_ip_map(ips, write(tmp_path, "m.csv", "ip,user\n10.0.0.9,library-kiosk\n"))
    ips.set("10.0.0.9", "alice", 300)
    assert ips.get("10.0.0.9") == "alice"
    clock.advance(300)
    assert ips.get("10.0.0.9") == "library-kiosk"
    # A reload replaces the CSV rows and leaves pushed entries alone.
    ips.set("10.0.0.8", "bob", 300)
    load_ip_map(ips, write(tmp_path, "m.csv", "ip,user\n10.0.0.7,reception\n"))
    assert [ips.get(f"10.0.0.{i}") for i in (7, 8, 9)] == ["reception", "bob", None]


def test_ip_map_broken_reload_keeps_the_old_rows(tmp_path):
    ips = IpUserMap(clock=FakeClock())
    path = write(tmp_path, "m.csv", "ip,user\n10.0.0.9,kiosk\n")
    load_ip_map(ips, path)
    path.write_text("address,who\n10.0.0.9,other\n")
    with pytest.raises(IdentityFileError, match="has no ip, user column"):
        load_ip_map(ips, path)
    assert ips.get("10.0.0.9") == "kiosk"


def test_ip_map_version_moves_with_every_change_get_could_see(tmp_path):
    # The gateway caches identities per connection and asks again when the version moves.
    clock = FakeClock()
    ips = IpUserMap(clock=clock)
    seen = [ips.version]

    def moved() -> bool:
        seen.append(ips.version)
        return seen[-1] > seen[-2]

    ips.set("10.0.0.1", "alice", 60)
    assert moved()
    ips.set("10.0.0.1", "alice", 600)  # the same user for longer: the expiry changed
    assert moved()
    assert not ips.forget("10.0.0.1", "bob") and not ips.forget("10.0.0.2")
    assert not moved()
    assert ips.forget("10.0.0.1")
    assert moved()
    ips.set("10.0.0.3", "carol", 10)
    assert moved()
    assert ips.purge() == 0
    assert not moved()
    clock.advance(10)
    assert ips.purge() == 1
    assert moved()
    ips.replace_file_rows({"10.0.0.9": ("kiosk", None)})
    assert moved()
    load_ip_map(ips, write(tmp_path, "m.csv", "ip,user\n10.0.0.9,reception\n"))
    assert moved()
    # Questions and refused changes leave it alone.
    ips.get("10.0.0.9"), ips.expires("10.0.0.9"), len(ips)
    with pytest.raises(ValueError):
        ips.set("10.0.0.1", "alice", 0)
    with pytest.raises(ValueError):
        ips.replace_file_rows({"not an ip": ("alice", None)})
    with pytest.raises(IdentityFileError):
        load_ip_map(ips, tmp_path / "missing.csv")
    assert not moved()
    assert ips.get("10.0.0.9") == "reception"


def test_ip_map_version_moves_when_a_full_map_evicts():
    ips = IpUserMap(max_entries=1, clock=FakeClock())
    ips.set("10.0.0.1", "alice", 60)
    before = ips.version
    ips.set("10.0.0.2", "bob", 60)  # alice is evicted
    assert ips.version > before and ips.get("10.0.0.1") is None


def test_ip_map_expires_says_until_when_the_answer_holds():
    clock = FakeClock()
    ips = IpUserMap(clock=clock)
    ips.replace_file_rows({"10.0.0.7": ("kiosk", None), "10.0.0.8": ("reception", 100)})
    ips.set("::ffff:10.0.0.7", "alice", 60)
    start = clock.now
    # A pushed entry over a file row: its own expiry, then the file row's (never).
    assert ips.get("10.0.0.7") == "alice" and ips.expires("10.0.0.7") == start + 60
    assert ips.expires("::ffff:10.0.0.7") == start + 60
    assert ips.expires("10.0.0.7", now=start + 60) == math.inf
    clock.advance(60)
    assert ips.get("10.0.0.7") == "kiosk" and ips.expires("10.0.0.7") == math.inf
    # A file row with a TTL counts from its load.
    assert ips.get("10.0.0.8") == "reception" and ips.expires("10.0.0.8") == start + 100
    clock.advance(40)
    assert ips.get("10.0.0.8") is None and ips.expires("10.0.0.8") == math.inf
    # Nobody there, or not an address: nothing to expire.
    assert ips.expires("10.0.0.1") == math.inf
    assert ips.expires("not an ip") == math.inf


def test_ip_map_expires_follows_the_map_clock_by_default():
    ips = IpUserMap()
    ips.set("10.0.0.1", "alice", 60)
    left = ips.expires("10.0.0.1") - time.monotonic()
    assert 59 < left <= 60


def test_ip_map_file_rows_filled_in_memory():
    clock = FakeClock()
    ips = IpUserMap(clock=clock)
    ips.replace_file_rows({"::ffff:10.0.0.1": ("SCHOOL\\Alice", None), "10.0.0.2": ("bob", 30)})
    assert [ips.get("10.0.0.1"), ips.get("10.0.0.2")] == ["alice", "bob"]
    clock.advance(30)
    assert [ips.get("10.0.0.1"), ips.get("10.0.0.2")] == ["alice", None]
    # A bad row refuses the whole replacement: the old rows stay.
    for bad in ({"10.0.0.300": ("carol", None)}, {"10.0.0.3": ("", None)},
                {"10.0.0.3": ("carol", 0)}, {"10.0.0.3": ("carol", MAX_TTL + 1)}):
        with pytest.raises(ValueError):
            ips.replace_file_rows({"10.0.0.4": ("dave", None), **bad})
    assert ips.get("10.0.0.1") == "alice" and ips.get("10.0.0.4") is None


def test_ip_map_rows_are_checked_without_a_file():
    # The checks are about the data; the file reader only turns lines into rows.
    summary = FileSummary("feed")
    entries = ip_map_entries([(2, {"ip": "10.0.0.1", "user": "Alice"}),
                              (3, {"ip": "10.0.0.300", "user": "bob"}),
                              (4, {"ip": "10.0.0.2", "user": "carol", "ttl_seconds": "60"})],
                             summary)
    assert entries == {"10.0.0.1": ("alice", None), "10.0.0.2": ("carol", 60)}
    assert problems(summary) == ["feed:3: ip: '10.0.0.300' is not an IP address; line skipped"]
    assert summary.entries == 2


# ---------------------------------------------------------------------------------------------
# Devices and user groups


def test_device_map(tmp_path):
    path = write(tmp_path, "devices.csv", "\n".join([
        "key,device",                    # 1
        "10.20.1.7,LIB-PC-07",           # 2
        "AA-BB-CC-00-11-22,IPAD-031",    # 3
        "aabb.cc00.1133,IPAD-032",       # 4
        "::ffff:10.20.1.8,LIB-PC-08",    # 5
        "printer,HP-1",                  # 6 neither IP nor MAC
        "aa:bb:cc:00:11:22,IPAD-DUP",    # 7 the same MAC again
        "10.20.1.9,bad\tname",           # 8
        "10.20.1.10,",                   # 9
    ]))
    devices = DeviceMap()
    summary = load_devices(devices, path)
    assert problems(summary) == [
        f"{path}:6: key: 'printer' is neither an IP address nor a MAC address (such as "
        "aa:bb:cc:dd:ee:ff); line skipped",
        f"{path}:7: aa:bb:cc:00:11:22 is already on line 3; line skipped",
        f"{path}:8: device: names are at most 256 printable characters; line skipped",
        f"{path}:9: no device in this row; line skipped",
    ]
    assert devices.device_for("10.20.1.7") == "LIB-PC-07"
    assert devices.device_for("10.20.1.8") == "LIB-PC-08"
    assert devices.device_for("10.99.0.1", mac="aa:bb:cc:00:11:33") == "IPAD-032"
    # The MAC wins over the IP: it survives a new DHCP lease.
    assert devices.device_for("10.20.1.7", mac="AABBCC001122") == "IPAD-031"
    assert devices.device_for("10.20.1.7", mac="ff:ff:ff:ff:ff:ff") == "LIB-PC-07"
    assert devices.device_for("10.20.1.7", mac="garbage") == "LIB-PC-07"
    assert devices.device_for("10.99.0.1") is None


def test_user_groups(tmp_path):
    path = write(tmp_path, "groups.csv", "\n".join([
        "user,group",                    # 1
        "SCHOOL\\Alice,secondary",       # 2
        "bob@school.example,staff",      # 3
        "carol,wizards",                 # 4 no such group
        "ALICE,staff",                   # 5 alice again
        "\\,staff",                      # 6 no username left
    ]))
    groups = UserGroups()
    summary = load_user_groups(groups, path, known_groups={"secondary", "staff", "guest"})
    assert problems(summary) == [
        f"{path}:4: group: 'wizards' is not a group in the configuration (guest, secondary, "
        "staff); line skipped",
        f"{path}:5: user 'alice' is already on line 2; line skipped",
        f"{path}:6: user: '\\\\' is not a username; line skipped",
    ]
    assert groups.group_of("alice") == "secondary"
    assert groups.group_of("OTHERDOMAIN\\ALICE") == "secondary"
    assert groups.group_of("Bob") == "staff"
    assert groups.group_of("carol") is None
    assert groups.group_of("") is None


def test_device_map_and_user_groups_filled_in_memory():
    devices = DeviceMap({"::ffff:10.20.1.7": "LIB-PC-07"}, {"AA-BB-CC-00-11-22": "IPAD-031"})
    assert devices.device_for("10.20.1.7") == "LIB-PC-07"
    assert devices.device_for("10.99.0.1", mac="aabb.cc00.1122") == "IPAD-031"
    assert len(devices) == 2
    for by_ip, by_mac in (({"printer": "HP-1"}, {}), ({}, {"aa:bb": "X"}),
                          ({"10.0.0.1": "bad\tname"}, {})):
        with pytest.raises(ValueError):
            devices.replace(by_ip, by_mac)
    assert devices.device_for("10.20.1.7") == "LIB-PC-07"  # a refused replacement changes nothing
    devices.replace({"10.20.1.8": "LIB-PC-08"}, {})
    assert devices.device_for("10.20.1.7") is None
    assert devices.device_for("10.20.1.8") == "LIB-PC-08"

    groups = UserGroups({"SCHOOL\\Alice": "secondary"})
    assert groups.group_of("alice") == "secondary"
    with pytest.raises(ValueError):
        groups.replace({"bob": "staff", "\\": "staff"})
    assert groups.group_of("alice") == "secondary" and groups.group_of("bob") is None
    groups.replace({"bob": "staff"})
    assert groups.group_of("alice") is None and groups.group_of("Bob") == "staff"
    assert len(groups) == 1


# ---------------------------------------------------------------------------------------------
# The identifier: the documented order


class FakeDirectory:
    """The identifier reads only cached LDAP answers; the real thing is tested further down."""

    def __init__(self, groups: dict[str, str]):
        self.groups = groups

    def cached_group(self, user: str) -> str | None:
        return self.groups.get(normalise_user(user))


@pytest.fixture
def identifier(config: Config) -> Identifier:
    clock = FakeClock()
    ips = IpUserMap(clock=clock)
    ips.set("10.20.1.7", "SCHOOL\\Alice", 600)  # alice at a secondary-subnet PC
    ips.set("10.30.0.9", "dave", 600)           # dave: in no group file, on the staff subnet
    ips.set("10.20.1.8", "erin", 600)           # erin: only the directory knows her group
    # The tables are filled in memory: identification never needs a file.
    devices = DeviceMap({"10.20.1.7": "LIB-PC-07"}, {"aa:bb:cc:dd:ee:ff": "IPAD-1"})
    groups = UserGroups({"alice": "sixth_form", "bob": "staff"})
    return Identifier(SubnetGroups(config).identify, ip_users=ips, devices=devices,
                      user_groups=groups, ldap=FakeDirectory({"erin": "primary", "bob": "guest"}))


@pytest.mark.parametrize(
    ("ip", "proxy_user", "mac", "expected"),
    [
        # The user's row in the group file decides, wherever they sit.
        ("10.20.1.7", None, None,
         Identity("10.20.1.7", "sixth_form", "user-csv", "alice", "LIB-PC-07")),
        # A proxy login beats the IP map: bob logged in at alice's PC. The group file beats the
        # directory for bob.
        ("10.20.1.7", "SCHOOL\\Bob", None,
         Identity("10.20.1.7", "staff", "user-csv", "bob", "LIB-PC-07")),
        # The directory's group when the file has no row.
        ("10.20.1.8", None, None, Identity("10.20.1.8", "primary", "ldap-group", "erin", None)),
        # A known user with no group anywhere: the subnet decides, the user is still recorded.
        ("10.30.0.9", None, None, Identity("10.30.0.9", "staff", "subnet", "dave", None)),
        ("::ffff:10.30.0.9", None, None, Identity("10.30.0.9", "staff", "subnet", "dave", None)),
        ("172.16.0.4", "frank", None, Identity("172.16.0.4", "guest", "subnet", "frank", None)),
        # Nobody known: subnet, then the default group.
        ("10.10.0.1", None, None, Identity("10.10.0.1", "primary", "subnet", None, None)),
        ("8.8.8.8", None, None, Identity("8.8.8.8", "guest", "default", None, None)),
        # The device by MAC, where a feed knows it.
        ("8.8.8.8", None, "AA-BB-CC-DD-EE-FF",
         Identity("8.8.8.8", "guest", "default", None, "IPAD-1")),
        # A proxy user that is not a username is ignored, not trusted.
        ("8.8.8.8", "bad\nname", None, Identity("8.8.8.8", "guest", "default", None, None)),
    ],
)
def test_identification_order(identifier, ip, proxy_user, mac, expected):
    assert identifier.identify(ip, proxy_user=proxy_user, mac=mac) == expected


def test_identifier_with_only_subnets(config):
    identify = Identifier(SubnetGroups(config).identify).identify
    assert identify("10.20.50.3", proxy_user="alice") == Identity(
        "10.20.50.3", "sixth_form", "subnet", "alice", None)
    assert identify("8.8.4.4") == Identity("8.8.4.4", "guest", "default")


def test_identifier_ip_map_expiry(config):
    clock = FakeClock()
    ips = IpUserMap(clock=clock)
    ips.set("10.20.1.7", "alice", 60)
    groups = UserGroups()
    identifier = Identifier(SubnetGroups(config).identify, ip_users=ips, user_groups=groups)
    assert identifier.identify("10.20.1.7").user == "alice"
    assert identifier.identify("10.20.1.7", now=clock.now + 60).user is None
    clock.advance(60)
    assert identifier.identify("10.20.1.7") == Identity("10.20.1.7", "secondary", "subnet")


class FakeLdap(FakeDirectory):
    """The directory as `IdentitySources` sees it (the `Directory` protocol)."""

    def __init__(self, groups: dict[str, str], passwords: dict[str, str]):
        super().__init__(groups)
        self.settings = LdapSettings(url="ldap://directory.test", user_dn_template=PEOPLE_TEMPLATE)
        self.passwords = passwords
        self.binds: list[str] = []

    def recently_verified(self, user: str, password: str) -> bool:
        return False

    def authenticate(self, user: str, password: str) -> bool:
        self.binds.append(user)
        return bool(password) and self.passwords.get(user) == password

    def groups_of(self, user: str) -> frozenset[str]:
        return frozenset()


def test_identity_sources_compose_logins_and_identification(config):
    subnets = SubnetGroups(config)
    htpasswd = HtpasswdUsers({"amy": sha_hash("a")})
    ldap = FakeLdap({"erin": "primary"}, {"erin": "e", "amy": "directory-pw"})
    ips = IpUserMap(clock=FakeClock())
    ips.set("10.20.1.8", "erin", 600)
    identifier = Identifier(subnets.identify, ip_users=ips, ldap=ldap)
    sources = IdentitySources(identifier, subnets, htpasswd, ldap, frozenset({"staff"}))
    assert sources.proxy_auth
    # htpasswd first; a miss there is asked of the directory.
    assert sources.authenticate("amy", "a") and ldap.binds == []
    assert sources.authenticate("amy", "directory-pw") and ldap.binds == ["amy"]
    assert not sources.authenticate("amy", "wrong")
    assert sources.recently_verified("amy", "a") and not sources.recently_verified("erin", "e")
    # Only the staff subnet must log in.
    assert sources.must_log_in("10.30.0.9") and not sources.must_log_in("10.20.1.8")
    assert sources.identify("10.20.1.8") == Identity("10.20.1.8", "primary", "ldap-group", "erin")
    assert sources.identify("10.20.1.8", proxy_user="SCHOOL\\Bob") == Identity(
        "10.20.1.8", "secondary", "subnet", "bob")

    nobody = IdentitySources(Identifier(subnets.identify), subnets, None, None, frozenset())
    assert not nobody.proxy_auth and not nobody.authenticate("amy", "a")
    assert not nobody.recently_verified("amy", "a") and not nobody.must_log_in("10.30.0.9")


@pytest.mark.parametrize(("given", "expected"),
                         [("SCHOOL\\Alice", "alice"), ("", None), ("bad\nname", None)])
def test_login_name(given, expected):
    assert login_name(given) == expected


# ---------------------------------------------------------------------------------------------
# LDAP, against a real slapd


PEOPLE_TEMPLATE = f"uid={{user}},ou=people,{BASE_DN}"
GROUPS_BASE = f"ou=groups,{BASE_DN}"
MAPPING = (("staff", "staff"), (f"CN=KS3, OU=Groups,{BASE_DN}", "secondary"),
           ("sixthform", "sixth_form"))


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    with running_slapd(tmp_path_factory.mktemp("slapd"), tls=True) as server:
        yield server


@pytest.fixture
def own_slapd(tmp_path: Path) -> Iterator[Slapd]:
    """A directory this test may stop and start."""
    with running_slapd(tmp_path / "slapd") as server:
        yield server


def settings(url: str, **changes) -> LdapSettings:
    values = {"user_dn_template": PEOPLE_TEMPLATE, "group_mapping": MAPPING} | changes
    return LdapSettings(url=url, **values)


#: Three ways schools set it up: bind by DN template and read memberOf (the overlay is on);
#: find the user with a service account and search the groups (which finds posixGroups too);
#: find the user anonymously is refused by this directory's ACL, as by Active Directory's.
TEMPLATE = {}
SEARCH = {"user_dn_template": None, "user_search_base": BASE_DN, "service_dn": SERVICE_DN,
          "service_password": SERVICE_PASSWORD, "group_search_base": GROUPS_BASE}


@pytest.mark.parametrize(
    ("setup", "user", "password", "ok", "group"),
    [
        (TEMPLATE, "alice", "alice-pw", True, "secondary"),
        (TEMPLATE, "bob", "bob-pw", True, "staff"),
        # carol is in staff and ks3: the mapping lists staff first.
        (TEMPLATE, "carol", "carol-pw", True, "staff"),
        # Domain and case forms name the same person.
        (TEMPLATE, "SCHOOL\\Alice", "alice-pw", True, "secondary"),
        # A name that needs escaping in a DN.
        (TEMPLATE, "o'neill", "oneill-pw", True, "secondary"),
        # dave's only group is a posixGroup (memberUid), which memberOf does not list.
        (TEMPLATE, "dave", "dave-pw", True, None),
        (TEMPLATE, "erin", "erin-pw", True, None),
        (TEMPLATE, "alice", "bob-pw", False, None),
        (TEMPLATE, "nobody", "x", False, None),
        (TEMPLATE, "*", "alice-pw", False, None),
        (SEARCH, "alice", "alice-pw", True, "secondary"),
        (SEARCH, "carol", "carol-pw", True, "staff"),
        (SEARCH, "dave", "dave-pw", True, "sixth_form"),
        (SEARCH, "o'neill", "oneill-pw", True, "secondary"),
        (SEARCH, "alice", "wrong", False, None),
        (SEARCH, "nobody", "x", False, None),
        # Filter metacharacters are escaped: these match nobody. Unescaped, "ali*" would find
        # exactly alice, and her password would log in a user the directory does not have.
        (SEARCH, "ali*", "alice-pw", False, None),
        (SEARCH, "*", "alice-pw", False, None),
        (SEARCH, "alice)(uid=*", "alice-pw", False, None),
    ],
)
def test_ldap_logins_and_groups(slapd, setup, user, password, ok, group):
    directory = LdapDirectory(settings(slapd.url, **setup), clock=FakeClock())
    assert directory.authenticate(user, password) is ok
    assert directory.recently_verified(user, password) is ok
    assert directory.cached_group(user) == group


def test_ldap_anonymous_user_search_finds_nobody(slapd, caplog):
    # Without a service account the search runs anonymously, which this directory (like Active
    # Directory) does not allow: every login is refused, and the log says why that may be.
    directory = LdapDirectory(settings(slapd.url, user_dn_template=None, user_search_base=BASE_DN))
    with caplog.at_level(logging.INFO, "schoolgate.ldap"):
        assert not directory.authenticate("alice", "alice-pw")
    assert "anonymous search is not allowed: set service_dn" in caplog.text


def test_ldap_mapping_order_and_names(slapd):
    # The same user, two mappings: the first pair the user is in decides. Keys are a cn or a DN,
    # in any case.
    ks3_first = (("KS3", "secondary"), (f"cn=staff,ou=groups,{BASE_DN}", "staff"))
    directory = LdapDirectory(settings(slapd.url, group_mapping=ks3_first))
    assert directory.authenticate("carol", "carol-pw")
    assert directory.cached_group("carol") == "secondary"
    assert directory.cached_groups("carol") == {
        f"cn=staff,ou=groups,{BASE_DN}", f"cn=ks3,ou=groups,{BASE_DN}"}
    assert directory.schoolgate_group(frozenset()) is None


def test_ldap_empty_password_is_never_sent(slapd):
    # The trap: this directory, like Active Directory, answers a DN with an empty password as a
    # successful anonymous bind. Show that it does, then that a login never gets that far.
    if shutil.which("ldapwhoami"):
        trap = subprocess.run(["ldapwhoami", "-x", "-H", slapd.url, "-D",
                               ldap_server.user_dn("alice"), "-w", ""],
                              capture_output=True, text=True, timeout=30)
        assert trap.returncode == 0 and "anonymous" in trap.stdout
    directory = LdapDirectory(settings(slapd.url))
    assert not directory.authenticate("alice", "")
    assert not directory.recently_verified("alice", "")
    assert not directory.authenticate("", "alice-pw")


def test_ldap_groups_of_a_user_known_from_the_ip_map(slapd):
    directory = LdapDirectory(settings(slapd.url, **SEARCH), clock=FakeClock())
    assert directory.cached_group("dave") is None
    assert directory.groups_of("SCHOOL\\Dave") == {f"cn=sixthform,ou=groups,{BASE_DN}"}
    assert directory.cached_group("dave") == "sixth_form"
    assert directory.groups_of("nobody") == frozenset()
    # Without a service account there is no honest answer to give.
    anonymous = LdapDirectory(settings(slapd.url))
    with pytest.raises(DirectoryUnavailable, match="needs a service account"):
        anonymous.groups_of("dave")
    wrong = LdapDirectory(settings(slapd.url, **(SEARCH | {"service_password": "nope"})))
    with pytest.raises(DirectoryUnavailable, match="service account .* cannot bind: "
                                                   "invalidCredentials"):
        wrong.groups_of("dave")


def test_ldap_cache_answers_while_the_directory_is_down(own_slapd, caplog):
    clock = FakeClock()
    directory = LdapDirectory(settings(own_slapd.url, cache_seconds=300), clock=clock)
    assert directory.authenticate("bob", "bob-pw")
    own_slapd.stop()
    clock.advance(299)
    # Remembered: no bind needed, so the outage does not matter yet.
    assert directory.recently_verified("bob", "bob-pw")
    assert directory.authenticate("bob", "bob-pw")
    assert directory.cached_group("bob") == "staff"
    # Only that exact login is remembered.
    with caplog.at_level(logging.INFO, "schoolgate.ldap"):
        assert not directory.authenticate("bob", "other-pw")
    assert "could not be checked" in caplog.text
    clock.advance(1)
    # Expired: the directory must be asked, and it is down.
    assert not directory.recently_verified("bob", "bob-pw")
    assert directory.cached_group("bob") is None
    assert not directory.authenticate("bob", "bob-pw")
    own_slapd.start()
    assert directory.authenticate("bob", "bob-pw")
    assert "bob-pw" not in caplog.text and "other-pw" not in caplog.text


def test_ldap_cache_expiry_picks_up_a_password_change(own_slapd):
    clock = FakeClock()
    directory = LdapDirectory(settings(own_slapd.url, cache_seconds=60), clock=clock)
    assert directory.authenticate("alice", "alice-pw")
    own_slapd.set_password("alice", "new-pw")
    # Within the cache time the old password still works (documented), the new one binds.
    assert directory.authenticate("alice", "alice-pw")
    assert directory.authenticate("alice", "new-pw")
    clock.advance(60)
    assert not directory.authenticate("alice", "alice-pw")
    assert directory.authenticate("alice", "new-pw")


def test_ldap_failures_are_logged_without_the_password(slapd, caplog):
    directory = LdapDirectory(settings(slapd.url))
    down = LdapDirectory(settings(f"ldap://127.0.0.1:{free_port()}"))
    with caplog.at_level(logging.DEBUG):
        assert not directory.authenticate("alice", "Secret-Guess-1")
        assert not down.authenticate("alice", "Secret-Guess-2")
    assert "LDAP login refused for 'alice': invalidCredentials" in caplog.text
    assert "LDAP login for 'alice' could not be checked: " in caplog.text
    assert "Secret-Guess" not in caplog.text


def test_ldap_tls(slapd, tmp_path):
    assert slapd.ca_file is not None
    ldaps = LdapDirectory(settings(slapd.ldaps_url, ca_file=slapd.ca_file))
    assert ldaps.authenticate("alice", "alice-pw")
    assert ldaps.cached_group("alice") == "secondary"
    starttls = LdapDirectory(settings(slapd.url, start_tls=True, ca_file=slapd.ca_file))
    assert starttls.authenticate("bob", "bob-pw")


def test_ldap_tls_refuses_a_certificate_it_cannot_verify(slapd, tmp_path, caplog):
    # The system's CAs did not sign the test server's certificate: no login may pass.
    untrusted = LdapDirectory(settings(slapd.ldaps_url))
    with caplog.at_level(logging.WARNING, "schoolgate.ldap"):
        assert not untrusted.authenticate("alice", "alice-pw")
        assert not LdapDirectory(settings(slapd.url, start_tls=True)).authenticate(
            "alice", "alice-pw")
    assert caplog.text.count("certificate verify failed") == 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ldap_timeout_when_the_server_never_answers():
    # A port that accepts connections (the kernel completes them) and never says a word.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        directory = LdapDirectory(settings(f"ldap://127.0.0.1:{port}", timeout=0.5))
        result: list[bool] = []
        worker = threading.Thread(target=lambda: result.append(
            directory.authenticate("alice", "alice-pw")), daemon=True)
        worker.start()
        worker.join(timeout=30)  # a bound on a failing test, not a measurement
        assert not worker.is_alive(), "authenticate ignored its timeout"
    assert result == [False]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"url": "http://dc01"}, "url: 'http://dc01' must start with ldap:// or ldaps://"),
        ({"user_search_base": BASE_DN}, "give exactly one of user_dn_template and "
                                        "user_search_base"),
        ({"user_dn_template": None}, "give exactly one"),
        ({"user_dn_template": "uid=alice"}, "user_dn_template: must contain {user}"),
        ({"user_filter": "(uid=x)"}, "user_filter: must contain {user}"),
        ({"group_search_base": GROUPS_BASE, "group_filter": "(cn=*)"},
         "group_filter: must contain {dn} or {user}"),
        ({"service_dn": SERVICE_DN}, "service_dn and service_password go together"),
        ({"url": "ldaps://dc01", "start_tls": True}, "start_tls: not with ldaps://"),
        ({"timeout": 0}, "timeout: must be from 0 to 60 seconds, not 0"),
        ({"group_mapping": (("staff", ""),)}, "group_mapping: ('staff', '') has an empty name"),
    ],
)
def test_ldap_settings_refused(changes, message):
    values = {"url": "ldap://dc01.school.example", "user_dn_template": PEOPLE_TEMPLATE} | changes
    with pytest.raises(ValueError, match=re.escape(message)):
        LdapSettings(**values)


def test_ldap_settings_never_show_the_service_password():
    s = LdapSettings(url="ldap://dc01", user_dn_template=PEOPLE_TEMPLATE, service_dn=SERVICE_DN,
                     service_password="do-not-print")
    assert "do-not-print" not in repr(s)

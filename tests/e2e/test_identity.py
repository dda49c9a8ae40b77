"""Identity end to end, through the running gateway: who is browsing decides which group's policy
applies. A staff machine and a pupil machine get different answers for the same URL; a subnet that
requires a login gets 407 until the browser logs in, and a login (htpasswd, or an LDAP bind
against a real slapd) puts the person in their own group whatever machine they use; an entry
pushed to the IP map names the user until its TTL runs out, and then the machine's subnet decides
again; the IP map and device map files name the person and the device in the events.

Clients stand in for different machines by their loopback address: 127.0.0.1 is in the pupils
subnet (127.0.0.0/8), 127.0.0.2 in staff's, 127.0.0.3 in ks3's (which requires a login). The
test URL's host, `blocked.test`, is gambling: blocked for pupils and ks3, allowed for staff. It
resolves to the test origin (`policy_gateway.py`), so an allowed request really arrives there.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import bcrypt
import pytest

from .harness import (
    ORIGIN_NAMES,
    GatewayProcess,
    GatewaySetup,
    OriginPKI,
    Reply,
    clean_env,
    make_pki,
    read_events,
    run_cli,
    wait_for,
    wait_for_events,
    write_config,
)
from .policy_harness import (
    ORIGIN_BODY,
    Browser,
    RecordingOrigin,
    basic,
    only_trusting,
    open_tunnel,
    sources_available,
    start_gateway,
)

# tests/ holds helpers shared by the unit and end-to-end tests (ldap_server.py).
TESTS = str(Path(__file__).resolve().parents[1])
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)

import ldap_server  # noqa: E402

pytestmark = pytest.mark.e2e

PUPIL, STAFF, KS3 = "127.0.0.1", "127.0.0.2", "127.0.0.3"
PUSHED = "127.0.0.4"  # a pupils-subnet machine the push tests name a user at
MAPPED = "127.0.0.6"  # in the IP map and device map files
LIBRARY = "127.0.0.8"  # in the LDAP gateway's library group, where no login is asked
GAMBLING = "blocked.test"
TOKEN = "e2e-push-token-0123456789abcdef"

#: htpasswd logins: user -> password. user_groups.csv puts mr.jones in staff; pupil1 has no row.
LOGINS = {"mr.jones": "chalk and talk", "pupil1": "p@ss:word"}  # a colon, as RFC 7617 allows


def marker() -> str:
    return uuid.uuid4().hex


@dataclass
class Env:
    setup: GatewaySetup
    gateway: GatewayProcess
    origin: RecordingOrigin
    push_port: int | None = None

    @property
    def port(self) -> int:
        assert self.gateway.proxy_port is not None
        return self.gateway.proxy_port

    def browser(self, source: str, login: tuple[str, str] | None = None) -> Browser:
        return Browser(self.port, only_trusting(self.setup.schoolgate_ca), source=source,
                       login=login)

    def url(self, scheme: str, m: str, host: str = GAMBLING) -> str:
        return self.origin.url(scheme, host, f"/hello?m={m}")

    def event(self, m: str) -> dict:
        (row,) = wait_for_events(self.setup.database, "url LIKE ?", [f"%m={m}"],
                                 gateway=self.gateway)
        return row


def assert_allowed(env: Env, reply: Reply, m: str) -> None:
    assert reply.status == 200, reply
    assert reply.body == ORIGIN_BODY
    assert len(env.origin.requests_with(m)) == 1


def assert_blocked(env: Env, reply: Reply, m: str) -> None:
    assert reply.status == 403, reply
    assert "This page is blocked" in reply.text
    assert env.origin.requests_with(m) == []


def who(row: dict) -> tuple:
    return row["user"], row["group_name"], row["client_ip"]


@pytest.fixture(scope="module")
def web_pki(tmp_path_factory: pytest.TempPathFactory) -> OriginPKI:
    """The test origin's certificates (shared by this module's two gateways)."""
    return make_pki(tmp_path_factory.mktemp("identity-pki"), (*ORIGIN_NAMES, "fine.test"))


@pytest.fixture(scope="module")
def web_origin(web_pki: OriginPKI) -> Iterator[RecordingOrigin]:
    server = RecordingOrigin(web_pki)
    yield server
    server.close()


def groups_doc() -> dict:
    return {
        "pupils": {"subnets": ["127.0.0.0/8"], "blocked_categories": ["gambling"]},
        "staff": {"subnets": [f"{STAFF}/32"], "blocked_categories": []},
        "ks3": {"subnets": [f"{KS3}/32"], "blocked_categories": ["gambling"]},
    }


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, web_pki, web_origin) -> Iterator[Env]:
    sources_available(PUPIL, STAFF, KS3, PUSHED, MAPPED)
    directory = tmp_path_factory.mktemp("identity")
    files = directory / "identity"
    files.mkdir()
    (files / "htpasswd").write_text("".join(
        f"{user}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=4)).decode()}\n"
        for user, pw in LOGINS.items()), encoding="utf-8")
    (files / "user_groups.csv").write_text("user,group\nmr.jones,staff\nalice,staff\n",
                                           encoding="utf-8")
    (files / "ip_map.csv").write_text(f"ip,user,ttl_seconds\n{MAPPED},carol,\n", encoding="utf-8")
    (files / "devices.csv").write_text(f"key,device\n{MAPPED},LIB-PC-06\n", encoding="utf-8")
    (files / "push-token").write_text(TOKEN + "\n", encoding="utf-8")

    def patch(doc: dict) -> None:
        doc["groups"] = groups_doc()
        doc["identity"] = {
            "htpasswd": str(files / "htpasswd"),
            "login_required": ["ks3"],
            "user_groups": str(files / "user_groups.csv"),
            "ip_map": str(files / "ip_map.csv"),
            "devices": str(files / "devices.csv"),
            "push": {"listen": {"host": "127.0.0.1", "port": 0},
                     "token_file": str(files / "push-token"), "default_ttl": "1h"},
        }

    setup = write_config(directory, upstream_ca=web_pki.ca_cert, patch=patch)
    with start_gateway("identity", setup.config) as gw:
        found = gw.wait_for_output(r"IP map push endpoint on 127\.0\.0\.1:(\d+)")
        yield Env(setup, gw, web_origin, int(found[1]))


# ---------------------------------------------------------------------------------------------
# By machine: subnets


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_staff_machine_and_pupil_machine_get_different_answers_for_the_same_url(env, scheme):
    m_pupil, m_staff = marker(), marker()
    assert_blocked(env, env.browser(PUPIL).get(env.url(scheme, m_pupil)), m_pupil)
    assert_allowed(env, env.browser(STAFF).get(env.url(scheme, m_staff)), m_staff)

    pupil, staff = env.event(m_pupil), env.event(m_staff)
    assert (who(pupil), pupil["action"]) == ((None, "pupils", PUPIL), "block")
    assert (who(staff), staff["action"]) == ((None, "staff", STAFF), "allow")


# ---------------------------------------------------------------------------------------------
# Proxy logins (htpasswd)


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_login_required_subnet_gets_407_until_the_browser_logs_in(env, scheme):
    before = len(env.origin.requests)
    m = marker()
    reply = env.browser(KS3).get(env.url(scheme, m, host="fine.test"))

    assert reply.status == 407, reply
    assert reply.headers["Proxy-Authenticate"] == 'Basic realm="School web filter", charset="UTF-8"'
    assert len(env.origin.requests) == before
    # Asking for a login decides nothing about a site: no event.
    assert read_events(env.setup.database, "client_ip = ? AND url LIKE ?", [KS3, f"%{m}%"]) == []


@pytest.mark.parametrize(("authorization", "why"), [
    (basic("mr.jones", "wrong"), "wrong user name or password"),
    (basic("nobody", "x"), "wrong user name or password"),
    (basic("mr.jones", ""), "wrong user name or password"),
    ("Basic not*base64", "the login could not be read"),
    ("Bearer " + basic("mr.jones", LOGINS["mr.jones"])[6:], "the login could not be read"),
])
def test_wrong_login_gets_407_again(env, authorization, why):
    before = len(env.origin.requests)
    reply = env.browser(KS3).get(env.url("http", marker(), host="fine.test"),
                                 headers={"Proxy-Authorization": authorization})
    assert reply.status == 407, reply
    assert reply.text == f"Please log in to the school web filter ({why}).\n"
    assert len(env.origin.requests) == before


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_logged_in_user_lands_in_their_own_group(env, scheme):
    """mr.jones is on a ks3 machine, but user_groups.csv puts him in staff: he gets staff's
    answer. pupil1 has no row, so the machine's subnet group (ks3) decides for him."""
    m_teacher, m_pupil = marker(), marker()
    teacher = env.browser(KS3, login=("mr.jones", LOGINS["mr.jones"]))
    assert_allowed(env, teacher.get(env.url(scheme, m_teacher)), m_teacher)
    pupil = env.browser(KS3, login=("pupil1", LOGINS["pupil1"]))
    assert_blocked(env, pupil.get(env.url(scheme, m_pupil)), m_pupil)

    assert who(env.event(m_teacher)) == ("mr.jones", "staff", KS3)
    assert who(env.event(m_pupil)) == ("pupil1", "ks3", KS3)
    # The login is the gateway's business only: no website ever sees it.
    (received,) = env.origin.requests_with(m_teacher)
    assert received.header("Proxy-Authorization") == []


def test_login_with_curl(env):
    """The way a technician checks it: curl with the login in the proxy URL, over HTTPS."""
    m = marker()
    done = subprocess.run(
        ["curl", "--silent", "--show-error", "--max-time", "15", "--interface", KS3,
         "--proxy", f"http://mr.jones:{quote(LOGINS['mr.jones'])}@127.0.0.1:{env.port}",
         "--cacert", str(env.setup.schoolgate_ca), "--write-out", "%{http_code}",
         env.url("https", m)],
        capture_output=True, text=True, timeout=30, env=clean_env(),
    )
    assert done.returncode == 0, done.stderr
    body, status = done.stdout[:-3], done.stdout[-3:]
    assert (status, body.encode()) == ("200", ORIGIN_BODY)
    assert who(env.event(m)) == ("mr.jones", "staff", KS3)


# ---------------------------------------------------------------------------------------------
# The IP map: pushed entries with a TTL, and the file


def push(env: Env, payload, token: str = TOKEN, method: str = "POST") -> tuple[int, dict]:
    """Send `payload` to the gateway's IP map push endpoint, as RADIUS accounting would."""
    assert env.push_port is not None
    conn = http.client.HTTPConnection("127.0.0.1", env.push_port, timeout=10)
    try:
        conn.request(method, "/v1/ip-map", body=json.dumps(payload).encode(),
                     headers={"Authorization": f"Bearer {token}",
                              "Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_pushed_ip_map_entries_name_the_user_until_they_expire(env):
    """alice is pushed (one batch) at two pupils-subnet machines; user_groups.csv puts her in
    staff, so the gambling host opens for her on both. Pushed again with a TTL of one second,
    the entries expire: the IP map file's row names carol at one machine again, and the other is
    nobody's; both are back in the pupils group, blocked."""
    before = {ip: marker() for ip in (PUSHED, MAPPED)}
    for ip, m in before.items():
        assert_blocked(env, env.browser(ip).get(env.url("http", m)), m)
    assert who(env.event(before[PUSHED])) == (None, "pupils", PUSHED)
    assert who(env.event(before[MAPPED])) == ("carol", "pupils", MAPPED)

    def push_alice(ttl: int) -> None:
        assert push(env, [{"ip": PUSHED, "user": "SCHOOL\\Alice", "ttl": ttl},
                          {"ip": MAPPED, "user": "alice@school.example", "ttl": ttl}]) == (
            200, {"stored": 2})

    push_alice(ttl=600)
    for ip in (PUSHED, MAPPED):
        m = marker()
        assert_allowed(env, env.browser(ip).get(env.url("https", m)), m)
        assert who(env.event(m)) == ("alice", "staff", ip)

    push_alice(ttl=1)  # replaces the entries: they now run out in a second

    def fallen_back(ip: str):
        def check() -> str | None:
            m = marker()
            return m if env.browser(ip).get(env.url("http", m)).status == 403 else None
        return wait_for(check, f"the pushed entry for {ip} to expire",
                        on_timeout=env.gateway.tail)

    assert who(env.event(fallen_back(PUSHED))) == (None, "pupils", PUSHED)
    assert who(env.event(fallen_back(MAPPED))) == ("carol", "pupils", MAPPED)


def test_pushed_entry_survives_a_reload_and_ends_at_logoff(env):
    """A reload (as every emergency block makes) re-reads the identity files but keeps what the
    network pushed; a DELETE (a logoff script) ends the entry at once."""
    ip = "127.0.0.7"
    sources_available(ip)
    assert push(env, {"ip": ip, "user": "alice", "ttl": 600}) == (200, {"stored": 1})
    done = run_cli("reload", "--config", str(env.setup.config))
    assert done.returncode == 0, done.stderr + done.stdout
    m = marker()
    assert_allowed(env, env.browser(ip).get(env.url("http", m)), m)
    assert who(env.event(m)) == ("alice", "staff", ip)

    assert push(env, {"ip": ip, "user": "alice"}, method="DELETE") == (200, {"deleted": 1})
    m = marker()
    assert_blocked(env, env.browser(ip).get(env.url("http", m)), m)
    assert who(env.event(m)) == (None, "pupils", ip)


def test_push_with_a_wrong_token_changes_nothing(env):
    status, body = push(env, {"ip": PUSHED, "user": "alice", "ttl": 60}, token="not-" + TOKEN)
    assert status == 401 and body == {"error": "wrong token"}
    m = marker()
    assert_blocked(env, env.browser(PUSHED).get(env.url("http", m)), m)
    assert who(env.event(m)) == (None, "pupils", PUSHED)


def test_ip_map_and_device_map_files_name_the_person_and_the_machine(env):
    m = marker()
    assert_blocked(env, env.browser(MAPPED).get(env.url("http", m)), m)
    row = env.event(m)
    # carol has no group row: her machine's subnet decides.
    assert (row["user"], row["device"], row["group_name"]) == ("carol", "LIB-PC-06", "pupils")


def test_login_beats_the_ip_map(env):
    """The proxy login is the first source: it names the user even where the IP map names
    someone else (the person at the keyboard logged in; the map may be stale)."""
    m = marker()
    reply = env.browser(MAPPED, login=("mr.jones", LOGINS["mr.jones"])).get(env.url("http", m))
    assert_allowed(env, reply, m)
    row = env.event(m)
    assert (row["user"], row["device"], row["group_name"]) == ("mr.jones", "LIB-PC-06", "staff")


# ---------------------------------------------------------------------------------------------
# LDAP: logins bound against a real directory server, directory groups mapped to ours


@pytest.fixture(scope="module")
def ldap_env(tmp_path_factory: pytest.TempPathFactory, web_pki, web_origin) -> Iterator[Env]:
    """A gateway whose logins are LDAP binds to a seeded slapd on loopback (skipped without
    slapd, failed under CI=true: see tests/ldap_server.py). Every client must log in."""
    directory = tmp_path_factory.mktemp("identity-ldap")
    (directory / "service-password").write_text(ldap_server.SERVICE_PASSWORD + "\n")
    (directory / "push-token").write_text(TOKEN + "\n")
    with ldap_server.running_slapd(directory / "slapd") as slapd:
        def patch(doc: dict) -> None:
            doc["groups"] = {**groups_doc(),
                             "sixthform": {"subnets": [], "blocked_categories": []},
                             # Library machines: no login asked; the IP map names the user.
                             "library": {"subnets": [f"{LIBRARY}/32"],
                                         "blocked_categories": ["gambling"]}}
            doc["identity"] = {
                "login_required": ["pupils", "ks3"],
                "ldap": {
                    "url": slapd.url,
                    "user_dn_template": f"uid={{user}},ou=people,{ldap_server.BASE_DN}",
                    "group_search_base": f"ou=groups,{ldap_server.BASE_DN}",
                    # Searches the groups of users known only from the IP map.
                    "service_dn": ldap_server.SERVICE_DN,
                    "service_password_file": str(directory / "service-password"),
                    # Directory group -> Schoolgate group, first match wins.
                    "groups": {"staff": "staff", "ks3": "ks3", "sixthform": "sixthform"},
                    "timeout": 5,
                },
                "push": {"listen": {"host": "127.0.0.1", "port": 0},
                         "token_file": str(directory / "push-token")},
            }

        setup = write_config(directory, upstream_ca=web_pki.ca_cert, patch=patch)
        with start_gateway("identity-ldap", setup.config) as gw:
            found = gw.wait_for_output(r"IP map push endpoint on 127\.0\.0\.1:(\d+)")
            yield Env(setup, gw, web_origin, int(found[1]))


LDAP_USERS = [
    # (uid, Schoolgate group, allowed to the gambling host?)
    ("bob", "staff", True),  # groupOfNames member
    ("alice", "ks3", False),
    ("dave", "sixthform", True),  # a posixGroup member, by memberUid
    ("o'neill", "ks3", False),  # a name that must be escaped in the DN
    ("erin", "pupils", False),  # in no directory group: the machine's subnet decides
]


@pytest.mark.parametrize(("uid", "group", "allowed"), LDAP_USERS)
def test_ldap_user_lands_in_their_directory_group(ldap_env, uid, group, allowed):
    m = marker()
    password = ldap_server.PEOPLE[uid][0]
    reply = ldap_env.browser(PUPIL, login=(uid, password)).get(ldap_env.url("https", m))

    (assert_allowed if allowed else assert_blocked)(ldap_env, reply, m)
    assert who(ldap_env.event(m)) == (uid, group, PUPIL)


def test_ldap_wrong_password_or_no_login_gets_407(ldap_env):
    before = len(ldap_env.origin.requests)
    for login in (None, ("bob", "not-bobs-password"), ("bob", ""), ("nobody", "x")):
        reply = ldap_env.browser(PUPIL, login=login).get(ldap_env.url("http", marker()))
        assert reply.status == 407, (login, reply)
        assert reply.headers["Proxy-Authenticate"].startswith('Basic realm="School web filter"')
        tunnel = open_tunnel(ldap_env.port, GAMBLING, ldap_env.origin.https_port, source=PUPIL,
                             proxy_authorization=basic(*login) if login else None)
        assert tunnel.status == 407, (login, tunnel)
    assert len(ldap_env.origin.requests) == before


def test_ip_map_user_gets_their_directory_group_once_it_is_looked_up(ldap_env):
    """carol (who never logs in here, so nothing about her is cached) is pushed at a library
    machine: no login is asked there, so her directory groups are fetched in the background, as
    the service account; until they arrive the machine's group decides. She is in staff and ks3
    in the directory: the mapping's order puts her in staff."""
    sources_available(LIBRARY)
    assert push(ldap_env, {"ip": LIBRARY, "user": "carol", "ttl": 600}) == (200, {"stored": 1})

    def as_staff() -> str | None:
        m = marker()
        reply = ldap_env.browser(LIBRARY).get(ldap_env.url("http", m))
        assert reply.status in (200, 403), reply
        return m if reply.status == 200 else None

    m = wait_for(as_staff, "carol's directory groups to be looked up",
                 on_timeout=ldap_env.gateway.tail)
    assert who(ldap_env.event(m)) == ("carol", "staff", LIBRARY)
    earlier = read_events(ldap_env.setup.database, "client_ip = ? AND action = 'block'", [LIBRARY])
    assert all(who(row) == ("carol", "library", LIBRARY) for row in earlier), earlier

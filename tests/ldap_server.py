"""A real OpenLDAP directory for tests: Debian's slapd on 127.0.0.1, on ports the OS picks, with a
small school seeded in it (pupils, staff, a service account, groupOfNames and posixGroup groups).

Import it from any test folder (`tests/` is put on `sys.path` by the test module, see
tests/unit/test_directory.py). Without /usr/sbin/slapd the caller's test is skipped, except when
the environment says ``CI=true``: there a missing directory server is a broken build, not a skip.
Nothing here sleeps to synchronise: start-up polls the server with a deadline.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import ipaddress
import os
import secrets
import shutil
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

with warnings.catch_warnings():
    # ldap3 imports names its dependency pyasn1 has deprecated: not ours to fix, and under
    # `filterwarnings = error` it would fail whichever test imported it first.
    warnings.simplefilter("ignore", DeprecationWarning)
    import ldap3
    from ldap3.utils.dn import escape_rdn

__all__ = [
    "BASE_DN",
    "PEOPLE",
    "SERVICE_DN",
    "SERVICE_PASSWORD",
    "SLAPD",
    "Slapd",
    "require_slapd",
    "running_slapd",
    "user_dn",
]

SLAPD = Path(os.environ.get("SCHOOLGATE_TEST_SLAPD", "/usr/sbin/slapd"))
SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = Path("/usr/lib/ldap")

BASE_DN = "dc=school,dc=example"
ADMIN_DN = f"cn=admin,{BASE_DN}"
SERVICE_DN = f"cn=gateway,ou=services,{BASE_DN}"
SERVICE_PASSWORD = "gateway-service-secret"
ADMIN_PASSWORD = "admin-secret"

#: Seconds slapd may take to answer after it is started (it normally takes well under one).
START_TIMEOUT = 15.0

#: uid -> (password, cn). Passwords are stored as salted SHA-1 ({SSHA}), as slappasswd writes.
PEOPLE: dict[str, tuple[str, str]] = {
    "alice": ("alice-pw", "Alice Pupil"),  # a Year 8 pupil: ks3
    "bob": ("bob-pw", "Bob Teacher"),  # staff
    "carol": ("carol-pw", "Carol Both"),  # staff who is also in ks3 (a mapping-order test)
    "dave": ("dave-pw", "Dave Sixth"),  # sixth form: a posixGroup member by memberUid
    "erin": ("erin-pw", "Erin Nobody"),  # in no group at all
    "o'neill": ("oneill-pw", "Pat O'Neill"),  # a name that needs escaping in DNs and filters
}

#: (cn, objectClass, members): groupOfNames list member uids; posixGroup lists memberUid.
GROUPS: list[tuple[str, str, list[str]]] = [
    ("staff", "groupOfNames", ["bob", "carol"]),
    ("ks3", "groupOfNames", ["alice", "carol", "o'neill"]),
    ("sixthform", "posixGroup", ["dave"]),
]


def user_dn(uid: str) -> str:
    return f"uid={escape_rdn(uid)},ou=people,{BASE_DN}"


def require_slapd() -> None:
    """Skip the calling test when slapd is not installed; fail instead when CI=true."""
    missing = [str(p) for p in (SLAPD, SCHEMA_DIR / "core.schema", MODULE_DIR / "back_mdb.so")
               if not p.exists()]
    if not missing:
        return
    message = (f"LDAP tests need Debian's slapd ({', '.join(missing)} not found); "
               "install it with: apt-get install slapd ldap-utils")
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _ssha(password: str) -> str:
    salt = secrets.token_bytes(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Slapd:
    """One slapd process and its files. `stop()` and `start()` may be called again (the ports stay
    the same), so a test can take the directory away and bring it back."""

    folder: Path
    tls: bool = False
    port: int = 0
    tls_port: int = 0
    ca_file: Path | None = None
    """The CA that signed slapd's certificate (with `tls=True`)."""
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        assert self.tls, "start with tls=True for an ldaps:// listener"
        return f"ldaps://127.0.0.1:{self.tls_port}"

    @property
    def log_path(self) -> Path:
        return self.folder / "slapd.log"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except FileNotFoundError:
            return ""

    # -- lifecycle -------------------------------------------------------------------------------

    def create(self) -> None:
        """Write the config and the empty database folder; the entries are added by `seed()`."""
        (self.folder / "db").mkdir(parents=True, exist_ok=True)
        tls_lines = ""
        if self.tls:
            self.ca_file, cert, key = _make_certificates(self.folder)
            tls_lines = f"TLSCertificateFile {cert}\nTLSCertificateKeyFile {key}\n"
        schemas = "".join(f"include {SCHEMA_DIR / n}.schema\n"
                          for n in ("core", "cosine", "inetorgperson", "nis"))
        (self.folder / "slapd.conf").write_text(
            f"{schemas}"
            f"pidfile {self.folder / 'slapd.pid'}\n"
            f"argsfile {self.folder / 'slapd.args'}\n"
            f"modulepath {MODULE_DIR}\n"
            "moduleload back_mdb\n"
            "moduleload memberof\n"
            # Active Directory answers a bind with a DN and an empty password as a successful
            # anonymous bind; make this directory do the same, so the test of that trap is real.
            "allow bind_anon_dn\n"
            f"{tls_lines}"
            "database mdb\n"
            "maxsize 10485760\n"
            f'suffix "{BASE_DN}"\n'
            f'rootdn "{ADMIN_DN}"\n'
            f"rootpw {ADMIN_PASSWORD}\n"
            f"directory {self.folder / 'db'}\n"
            # Passwords are for binding only; anonymous clients can bind and see nothing else.
            "access to attrs=userPassword by self write by anonymous auth by * none\n"
            "access to * by users read by * none\n"
            "overlay memberof\n",
            encoding="utf-8",
        )

    def start(self) -> None:
        """Start slapd and wait until it answers; pick free ports on first start."""
        assert self.process is None, "already running"
        for attempt in range(5):
            if not self.port or attempt:
                self.port = _free_port()
                self.tls_port = _free_port() if self.tls else 0
            urls = self.url + (f" {self.ldaps_url}" if self.tls else "")
            with open(self.log_path, "ab") as log:
                # -d 0: stay in the foreground (so we own the process) without debug output.
                self.process = subprocess.Popen(
                    [str(SLAPD), "-f", str(self.folder / "slapd.conf"), "-h", urls, "-d", "0"],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                )
            if self._wait_until_answering():
                return
            self.stop()
        raise AssertionError(f"slapd did not start; its log:\n{self.log()}")

    def _wait_until_answering(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        delay = 0.01
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                return False  # exited: usually the port was taken between pick and bind
            server = ldap3.Server(self.url, connect_timeout=1)
            conn = ldap3.Connection(server, receive_timeout=1)
            try:
                if conn.bind():
                    return True
            except ldap3.core.exceptions.LDAPException:
                pass
            finally:
                conn.unbind()
                if conn.socket is not None:  # ldap3 leaves a refused socket open
                    conn.socket.close()
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
        return False

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def seed(self) -> None:
        """Add the school: people, a service account, and groups (memberOf kept by the overlay)."""
        conn = ldap3.Connection(ldap3.Server(self.url, connect_timeout=5), ADMIN_DN,
                                ADMIN_PASSWORD, receive_timeout=5, raise_exceptions=True)
        conn.bind()
        try:
            conn.add(BASE_DN, ["dcObject", "organization"], {"o": "Example School", "dc": "school"})
            for ou in ("people", "groups", "services"):
                conn.add(f"ou={ou},{BASE_DN}", "organizationalUnit")
            for number, (uid, (password, cn)) in enumerate(PEOPLE.items(), start=1000):
                conn.add(user_dn(uid), ["inetOrgPerson", "posixAccount"], {
                    "cn": cn, "sn": cn.split()[-1], "uid": uid, "userPassword": _ssha(password),
                    "uidNumber": number, "gidNumber": 100, "homeDirectory": f"/home/{number}",
                })
            conn.add(SERVICE_DN, ["organizationalRole", "simpleSecurityObject"],
                     {"userPassword": _ssha(SERVICE_PASSWORD)})
            for number, (cn, kind, members) in enumerate(GROUPS, start=2000):
                dn = f"cn={cn},ou=groups,{BASE_DN}"
                if kind == "posixGroup":
                    conn.add(dn, "posixGroup", {"gidNumber": number, "memberUid": members})
                else:
                    conn.add(dn, kind, {"member": [user_dn(m) for m in members]})
        finally:
            conn.unbind()

    def set_password(self, uid: str, password: str) -> None:
        """Change a user's password, as the school's technician would."""
        conn = ldap3.Connection(ldap3.Server(self.url, connect_timeout=5), ADMIN_DN,
                                ADMIN_PASSWORD, receive_timeout=5, raise_exceptions=True)
        conn.bind()
        try:
            conn.modify(user_dn(uid), {"userPassword": [(ldap3.MODIFY_REPLACE, [_ssha(password)])]})
        finally:
            conn.unbind()


@contextlib.contextmanager
def running_slapd(folder: Path, *, tls: bool = False) -> Iterator[Slapd]:
    """A seeded slapd in `folder` for the length of the `with` block (skips without slapd)."""
    require_slapd()
    server = Slapd(folder, tls=tls)
    server.create()
    server.start()
    try:
        server.seed()
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder / "db", ignore_errors=True)


def _make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a certificate for 127.0.0.1 signed by it; return (ca, cert, key) paths."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Schoolgate test LDAP CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    os.chmod(paths[2], 0o600)
    return paths

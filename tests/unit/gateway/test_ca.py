"""The school's interception CA: ECDSA P-256, named after the school, private files 0600, in the
files mitmproxy's certificate store reads; the site certificates mitmproxy makes from it verify
against it; an existing CA (an RSA one made by an older Schoolgate) is kept as it is."""

from __future__ import annotations

import logging
import stat

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from mitmproxy import certs

from schoolgate.gateway import bootstrap, ca
from schoolgate.sources.lists import build_classifier
from schoolgate.store import open_for_writing


def test_a_new_ca_is_ecdsa_p256_named_after_the_school(config):
    bootstrap.ensure_ca(config)
    folder = config.ca_dir
    cert = x509.load_pem_x509_certificate((folder / "mitmproxy-ca-cert.pem").read_bytes())
    key = serialization.load_pem_private_key((folder / "mitmproxy-ca.pem").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    assert cert.public_key() == key.public_key()
    cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    assert cn == f"Schoolgate CA - {config.school_name}"[:64]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for name in ("mitmproxy-ca.pem", "mitmproxy-ca.p12"):
        assert stat.S_IMODE((folder / name).stat().st_mode) & 0o077 == 0, name
    for name in ("mitmproxy-ca-cert.cer", "mitmproxy-ca-cert.p12", "mitmproxy-dhparam.pem"):
        assert (folder / name).stat().st_size > 0, name


def test_mitmproxy_makes_site_certificates_that_verify_against_it(tmp_path):
    ca.create_ca(tmp_path, organization="Schoolgate", common_name="Schoolgate CA - Test")
    store = certs.CertStore.from_store(tmp_path, ca.BASENAME, 2048)
    entry = store.get_cert("www.example.org", [x509.DNSName("www.example.org")])
    leaf = entry.cert.to_cryptography()
    issuer = store.default_ca.to_cryptography()
    leaf.verify_directly_issued_by(issuer)  # raises if the signature or names do not match
    assert leaf.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == \
        "www.example.org"


def test_an_existing_ca_is_kept(config):
    certs.CertStore.create_store(config.ca_dir, ca.BASENAME, 2048)
    before = (config.ca_dir / "mitmproxy-ca.pem").read_bytes()
    bootstrap.ensure_ca(config)
    assert (config.ca_dir / "mitmproxy-ca.pem").read_bytes() == before
    key = serialization.load_pem_private_key(before, None)
    assert isinstance(key, rsa.RSAPrivateKey)


def test_a_start_says_once_what_it_creates_and_a_restart_says_nothing(config, caplog):
    # Issue #15: a first start said "created a new interception CA", a line per migration and
    # "list cache ...: cannot be read ([Errno 2] No such file...)". Now one line, beforehand.
    with caplog.at_level(logging.DEBUG, logger="schoolgate"):
        bootstrap.announce_creation(config)
        bootstrap.ensure_ca(config)
    assert not config.illegal_lists  # the sample school has none: no copies to keep
    (said,) = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert said.levelno == logging.INFO
    assert said.getMessage() == (
        f"first start: creating the interception CA in {config.ca_dir} (install "
        f"mitmproxy-ca-cert.pem on managed devices), the event store {config.database_path} "
        f"and the list cache {config.data_dir / 'cache' / 'lists.idx'}")
    # Made, the CA is not announced again; what is still missing is.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="schoolgate"):
        bootstrap.announce_creation(config)
    assert [r.getMessage() for r in caplog.records] == [
        f"first start: creating the event store {config.database_path} and the list cache "
        f"{config.data_dir / 'cache' / 'lists.idx'}"]
    # With everything there (a restart), nothing.
    open_for_writing(config.database_path)
    build_classifier(config, cache=True)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="schoolgate"):
        bootstrap.announce_creation(config)
    assert caplog.records == [] and bootstrap.to_create(config) == []

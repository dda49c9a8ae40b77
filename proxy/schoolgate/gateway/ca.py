"""The school's interception CA, made on first start: an ECDSA P-256 key and a self-signed CA
certificate named after the school, written as the files mitmproxy's certificate store reads
(`mitmproxy-ca.pem` with the key, `mitmproxy-ca-cert.pem`/`.cer`/`.p12` to install on devices).

Why not mitmproxy's own `CertStore.create_store`: it makes an RSA-2048 key, and mitmproxy signs
with the CA's key in every intercepted TLS handshake (the CA key is also each site certificate's
key) and for every site certificate it makes. On these machines an RSA-2048 signature costs 270
us and an ECDSA P-256 one 18 us (`openssl speed`), so for an HTTPS connection that carries one
request, the handshake alone cost more than all of Schoolgate's filtering. Every device a school
manages today accepts an ECDSA CA (Windows since Vista, macOS, iOS, Android, ChromeOS). A CA
that exists is never replaced: schools keep the certificate their devices already trust,
whatever its key type.
"""

from __future__ import annotations

import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from mitmproxy import certs

__all__ = ["BASENAME", "create_ca"]

BASENAME = "mitmproxy"
"""The file names mitmproxy's `confdir` option looks for."""

_VALIDITY = datetime.timedelta(days=10 * 365)
_BACKDATE = datetime.timedelta(days=2)  # a device whose clock is a little behind still trusts it


def create_ca(folder: Path, *, organization: str, common_name: str) -> None:
    """Write a new CA into `folder` (created if missing); the private key files get mode 0600."""
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
    ])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .serial_number(x509.random_serial_number())
        .subject_name(name)
        .issuer_name(name)
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + _VALIDITY)
        .public_key(key.public_key())
        # The same extensions as mitmproxy's own CA (certs.create_ca).
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(private_key=key, algorithm=hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    with certs.CertStore.umask_secret():
        (folder / f"{BASENAME}-ca.pem").write_bytes(key_pem + cert_pem)
        (folder / f"{BASENAME}-ca.p12").write_bytes(pkcs12.serialize_key_and_certificates(
            BASENAME.encode(), key, cert, None, serialization.NoEncryption()))
    (folder / f"{BASENAME}-ca-cert.pem").write_bytes(cert_pem)
    (folder / f"{BASENAME}-ca-cert.cer").write_bytes(cert_pem)  # the name Android looks for
    (folder / f"{BASENAME}-ca-cert.p12").write_bytes(pkcs12.serialize_key_and_certificates(
        BASENAME.encode(), None, cert, None, serialization.NoEncryption()))
    (folder / f"{BASENAME}-dhparam.pem").write_bytes(certs.DEFAULT_DHPARAM)

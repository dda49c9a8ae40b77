"""The check client's only network code: one canary sent to the running gateway as a real proxy
request (plain HTTP, or CONNECT and a TLS handshake trusting only the Schoolgate CA), and the
gateway's check headers read back. Nothing is ever sent to a website."""

from __future__ import annotations

import functools
import http.client
import socket
import ssl
from pathlib import Path
from urllib.parse import urlsplit

from .answers import CHECK_HEADER, Observation, observation_from

__all__ = ["probe"]


def probe(address: tuple[str, int], token: str, group: str, url: str, ca_file: Path,
          timeout: float = 10.0) -> Observation:
    """Send one canary to the gateway at `address` as `group` and read its verdict. HTTPS goes
    through CONNECT and a TLS handshake that trusts only the Schoolgate CA in `ca_file`. Never
    raises for a network problem: the observation says what went wrong."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    scheme = parts.scheme
    port = parts.port or (443 if scheme == "https" else 80)
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    check = f"{token} group={group}"
    try:
        sock = socket.create_connection(address, timeout=timeout)
    except OSError as e:
        return Observation(None, error=f"cannot reach the gateway at {address[0]}:{address[1]}: "
                           f"{e}")
    try:
        if scheme == "http":
            return _request(sock, authority, f"http://{authority}{path}", check, "request")
        head = (f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n"
                f"{CHECK_HEADER}: {check}\r\n\r\n")
        sock.sendall(head.encode("ascii"))
        response = http.client.HTTPResponse(sock, method="CONNECT")
        response.begin()
        if response.status != 200:
            response.read()
            return observation_from(response.status, response.msg, "connect")
        response.close()  # nothing follows a 200 until the client speaks
        context = _tls_context(ca_file)
        try:
            tls = context.wrap_socket(sock, server_hostname=host)
        except ssl.SSLCertVerificationError as e:
            return Observation(None, "tls", error=f"the gateway's certificate for {host} is not "
                               f"from the Schoolgate CA in {ca_file}: {e.verify_message}")
        except (ssl.SSLError, ConnectionError, TimeoutError) as e:
            return Observation("block", "tls", reason="tls:refused",
                               rule=f"connection closed at the TLS handshake ({type(e).__name__})")
        sock = tls
        return _request(sock, authority, path, check, "request")
    except (OSError, http.client.HTTPException) as e:
        return Observation(None, error=f"{type(e).__name__}: {e}")
    finally:
        sock.close()


@functools.lru_cache(maxsize=4)  # one CA file per run: read it once, not once per canary
def _tls_context(ca_file: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file))


def _request(sock: socket.socket, authority: str, target: str, check: str,
             stage: str) -> Observation:
    head = (f"GET {target} HTTP/1.1\r\nHost: {authority}\r\n{CHECK_HEADER}: {check}\r\n"
            "User-Agent: schoolgate-check\r\nAccept: */*\r\nConnection: close\r\n\r\n")
    sock.sendall(head.encode("ascii"))
    response = http.client.HTTPResponse(sock, method="GET")
    response.begin()
    response.read()
    return observation_from(response.status, response.msg, stage)

"""The one proxy socket: bound with SO_REUSEADDR, never SO_REUSEPORT, and a busy port refused
with the message a technician can act on."""

from __future__ import annotations

import socket

import pytest

from schoolgate.config.model import Address
from schoolgate.gateway.workers.listen import ListenError, bind_listen_socket


def test_the_socket_is_inheritable_and_never_shares_its_port():
    sock = bind_listen_socket(Address("127.0.0.1", 0))
    try:
        assert sock.get_inheritable()
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        assert not sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
        port = sock.getsockname()[1]
        # A second bind to the port fails, as a second `schoolgate run` must.
        with pytest.raises(ListenError) as e:
            bind_listen_socket(Address("127.0.0.1", port))
        assert str(e.value) == (f"cannot listen on 127.0.0.1:{port}: address already in use "
                                "(is another schoolgate running?)")
    finally:
        sock.close()


def test_an_address_that_cannot_be_bound_says_so():
    with pytest.raises(ListenError, match=r"^cannot listen on 192\.0\.2\.1:0: "):
        bind_listen_socket(Address("192.0.2.1", 0))  # TEST-NET-1: not this machine's

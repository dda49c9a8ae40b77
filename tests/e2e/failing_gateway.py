"""`schoolgate` with a classifier that fails for some hosts: proves the RUNNING gateway fails closed.

Run as ``python failing_gateway.py run --config ...``; it takes the same arguments as `schoolgate`.
Test-only changes, made before the gateway starts and nowhere else:

- `Classifier.classify` raises RuntimeError for any host containing "explode" and classifies
  every other host as usual. The message is the same for every host, as a real bug's would be.
- Every `*.test` name resolves to 127.0.0.1, where the test origin listens, so a request to
  `explode.test:PORT` that leaked through the gateway would reach the origin and be counted.
"""

from __future__ import annotations

import socket
import sys

from schoolgate import cli
from schoolgate.classify import Classifier

_classify = Classifier.classify
_getaddrinfo = socket.getaddrinfo


def classify(self: Classifier, url, **request):
    if "explode" in str(url).split("/")[2]:  # the host part of the URL
        raise RuntimeError("injected classifier failure (e2e test)")
    return _classify(self, url, **request)


def getaddrinfo(host, *args, **kwargs):
    name = host.decode("ascii", "replace") if isinstance(host, bytes) else host
    if isinstance(name, str) and name.rstrip(".").lower().endswith(".test"):
        host = "127.0.0.1"
    return _getaddrinfo(host, *args, **kwargs)


Classifier.classify = classify
socket.getaddrinfo = getaddrinfo

if __name__ == "__main__":
    sys.exit(cli.main(sys.argv[1:]))

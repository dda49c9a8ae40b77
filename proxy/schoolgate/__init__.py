"""Schoolgate: a web filtering and monitoring gateway for UK schools, built on mitmproxy.

The package is layered so the decision code (config, identify, classify, policy) never imports
mitmproxy or the store; the addons under `schoolgate.addons` compose them inside the proxy.
"""

__version__ = "0.1.0"

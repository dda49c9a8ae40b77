"""The running service: the gateway's parts, its mitmproxy addons, metrics and the IP-map push
API."""

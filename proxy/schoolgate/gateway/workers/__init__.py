"""`schoolgate run --workers N`: a supervisor that binds the proxy socket once and owns what must
happen once (the event store's writer, alerts, reports, the metrics and push endpoints, list
refreshes), and N worker processes that inherit the socket and each run the whole request
pipeline. They talk over one socket pair per worker (`channel`).

A package of its own inside `gateway`: it composes the gateway's parts (it is below `cli`, which
only chooses it), and neither `service` nor the addons import it, so a single-process gateway
(`mitmdump -s proxy/entry.py`) carries none of it.
"""

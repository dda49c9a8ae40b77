"""End-to-end tests: the real `schoolgate run` as a subprocess, a real origin server on 127.0.0.1,
and real HTTP and HTTPS requests through the gateway."""

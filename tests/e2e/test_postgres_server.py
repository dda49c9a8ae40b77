"""The test PostgreSQL (tests/pg_server.py) that #17's store tests run against: a real server,
started as an unprivileged user on loopback, that keeps its data across a restart and refuses
connections while it is down."""

from __future__ import annotations

import sys
from pathlib import Path

import psycopg
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pg_server import running_postgres  # noqa: E402

pytestmark = pytest.mark.e2e


def test_a_cluster_starts_keeps_data_across_a_restart_and_stops():
    with running_postgres() as pg:
        with psycopg.connect(pg.dsn(), autocommit=True) as conn:
            conn.execute("CREATE TABLE t (n int)")
            conn.execute("INSERT INTO t VALUES (1), (2)")
            owner = conn.execute("SELECT usename FROM pg_user WHERE usesuper").fetchone()
        assert owner == ("admin",)
        pg.stop()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(pg.dsn(), connect_timeout=2)
        pg.start()
        with psycopg.connect(pg.dsn()) as conn:
            assert conn.execute("SELECT sum(n) FROM t").fetchone() == (3,)
        listening = pg.port
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(f"postgresql://admin@127.0.0.1:{listening}/postgres", connect_timeout=2)

"""
PostgreSQL connections under daphne: CONN_MAX_AGE=0 (the default: every request opens a
connection and closes it at the end) against DATABASE_POOL=true (each process keeps a
psycopg_pool of open connections and lends one per request).

Two daphne processes serve the same fresh database, one configured each way, beside the
Realtime stand-in. POST /api/realtime/sessions (sign-in lookup, rate limits, a key minted at the
stand-in, the conversation recorded) is called on both in alternation, so that the machine's
noise hits both alike: latency per key (one at a time), each server's CPU per key, and keys per
second with --concurrency requests in flight.

    .venv/bin/python bench/db_pool.py --database-url postgres://postgres@127.0.0.1:5432/postgres

The database named in the URL is only used to create (and afterwards drop) a fresh one.
Reuses key_issuance.py's set-up (stand-in, signed-in user, raised rate limits).
"""

import argparse
import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psutil
from key_issuance import (
    ROOT,
    STANDIN_KEY,
    configure_environment,
    free_port,
    percentile,
    prepare_database,
    wait_for_port,
)

MODES = {"CONN_MAX_AGE=0": {"DATABASE_POOL": "false"}, "DATABASE_POOL=true": {"DATABASE_POOL": "true"}}


@contextmanager
def fresh_postgres_database(server_url: str, prefix: str = "voicebench_pool"):
    """A new database on the server of `server_url`, dropped afterwards; yields its URL."""
    import psycopg

    parts = urlsplit(server_url)
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
    admin = urlunsplit(("postgresql", parts.netloc, parts.path or "/postgres", "", ""))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def measure(args, servers: dict, auth: dict) -> None:
    clients = {
        mode: httpx.AsyncClient(base_url=url, cookies=auth["cookies"], headers=auth["headers"], timeout=60)
        for mode, (url, _) in servers.items()
    }

    async def mint(mode):
        started = time.perf_counter()
        response = await clients[mode].post("/api/realtime/sessions", content=b"{}")
        assert response.status_code == 201, response.text
        return time.perf_counter() - started

    modes = list(servers)
    for _ in range(args.warmup):
        for mode in modes:
            await mint(mode)

    latency = {mode: [] for mode in modes}
    for i in range(args.keys):
        for mode in modes if i % 2 else reversed(modes):  # alternate which goes first
            latency[mode].append(await mint(mode))

    async def cpu_per_key(mode):
        process = psutil.Process(servers[mode][1])
        before = sum(process.cpu_times()[:2])
        for _ in range(args.keys):
            await mint(mode)
        return (sum(process.cpu_times()[:2]) - before) / args.keys

    cpu = {mode: [] for mode in modes}
    for order in (modes, modes[::-1]):
        for mode in order:
            cpu[mode].append(await cpu_per_key(mode))

    async def rate(mode):
        todo = iter(range(args.keys))

        async def worker():
            for _ in todo:
                await mint(mode)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        return args.keys / (time.perf_counter() - started)

    rates = {mode: [] for mode in modes}
    for order in (modes, modes[::-1]):  # ABBA: neither always runs first
        for mode in order:
            rates[mode].append(await rate(mode))

    for client in clients.values():
        await client.aclose()

    ms = lambda seconds: f"{seconds * 1000:.2f} ms"  # noqa: E731
    print(f"PostgreSQL, daphne x {len(modes)} (one per mode), keys per series: {args.keys}")
    for mode in modes:
        print(f"{mode}: latency per key, median: {ms(statistics.median(latency[mode]))}")
        print(f"{mode}: latency per key, p99: {ms(percentile(latency[mode], 99))}")
        print(f"{mode}: daphne CPU per key: {ms(statistics.mean(cpu[mode]))}")
        print(f"{mode}: keys per second ({args.concurrency} concurrent): {statistics.mean(rates[mode]):.0f}")
    base, pooled = modes
    for figure, values, average in (
        ("median latency", latency, statistics.median),
        ("daphne CPU per key", cpu, statistics.mean),
        ("keys per second", rates, statistics.mean),
    ):
        print(f"ratio pool/no-pool, {figure}: {average(values[pooled]) / average(values[base]):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True, help="a PostgreSQL server, e.g. postgres://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--keys", type=int, default=300, help="keys per series (default %(default)s)")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight for keys per second")
    args = parser.parse_args()

    with ExitStack() as stack:  # undone in reverse: servers, stand-in, database, folder
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-pool-")))
        database_url = stack.enter_context(fresh_postgres_database(args.database_url))
        port = free_port()
        standin = subprocess.Popen(
            [sys.executable, "-m", "tests.realtime_standin", "--port", str(port), "--api-key", STANDIN_KEY, "--quiet"],
            cwd=ROOT, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        stack.callback(standin.wait, 10)
        stack.callback(standin.terminate)
        wait_for_port(port, standin, "the stand-in")
        configure_environment(f"http://127.0.0.1:{port}/v1", workdir)
        os.environ["DATABASE_URL"] = database_url
        auth = prepare_database()
        from django.db import connections

        from tests.support.processes import LiveServer

        connections.close_all()  # DROP DATABASE … WITH (FORCE) would do it too, but politely
        servers = {}
        for i, (mode, env) in enumerate(MODES.items()):
            server = stack.enter_context(LiveServer({**os.environ, **env}, log=workdir / f"daphne-{i}.log"))
            servers[mode] = (server.url, server.process.pid)
        asyncio.run(measure(args, servers, auth))

if __name__ == "__main__":
    main()

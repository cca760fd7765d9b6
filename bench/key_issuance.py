"""
What POST /api/realtime/sessions adds to minting a key directly.

Starts the Realtime stand-in in its own process, then, in one run, alternates two calls per
iteration so that the machine's noise hits both alike:
  direct:   POST {stand-in}/v1/realtime/client_secrets with the same GA body the app sends;
  endpoint: POST /api/realtime/sessions as a signed-in user (session cookie + CSRF token),
            which authenticates, rate-limits, mints through the stand-in and records.
The endpoint runs in-process (the ASGI app driven through httpx, in one event loop as under
daphne) or, with --daphne, as a real daphne server in its own process.

    .venv/bin/python bench/key_issuance.py [--keys 300] [--daphne]

Prints one figure per line. Overhead = endpoint − direct, per iteration (paired).
Database: a throw-away SQLite file; rate limits are raised out of the way.
"""

import argparse
import asyncio
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STANDIN_KEY = "sk-bench-standin-key"
# WhiteNoise notes the missing collectstatic folder; the benchmark serves no static files.
warnings.filterwarnings("ignore", message="No directory at")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, what: str) -> None:
    for _ in range(200):
        if process.poll() is not None:
            sys.exit(f"{what} exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    sys.exit(f"{what} did not start")


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def configure_environment(standin_url: str, workdir: str) -> None:
    os.environ.update(
        DJANGO_SETTINGS_MODULE="voiceproject.settings",
        SECRET_KEY="bench-" + secrets.token_urlsafe(32),
        DEBUG="false",
        ALLOWED_HOSTS="127.0.0.1,localhost,testserver",
        DATABASE_URL=f"sqlite:///{workdir}/bench.sqlite3",
        OPENAI_BASE_URL=standin_url,
        OPENAI_API_KEY=STANDIN_KEY,
        KEY_RATE_LIMIT_PER_USER="1000000/minute",
        KEY_RATE_LIMIT_PER_IP="1000000/minute",
        KEY_DAILY_LIMIT_PER_USER="1000000/day",
        SECURE_SSL_REDIRECT="false",
        SESSION_COOKIE_SECURE="false",
        CSRF_COOKIE_SECURE="false",
        LOG_LEVEL="ERROR",  # no log line per request on the terminal
    )
    for name in ("REDIS_URL",):  # the default storages, unless asked otherwise
        if not os.environ.get("BENCH_KEEP_" + name):
            os.environ.pop(name, None)


def prepare_database() -> dict:
    """Migrate the throw-away database; a signed-in user's cookies and CSRF header."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.contrib.sessions.backends.db import SessionStore
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user("bench", password=secrets.token_urlsafe(16))
    session = SessionStore()
    session["_auth_user_id"] = str(user.pk)
    session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    session["_auth_user_hash"] = user.get_session_auth_hash()
    session.create()
    csrf = secrets.token_hex(16)  # a 32-character secret: accepted unmasked as the header token
    return {
        "cookies": {"sessionid": session.session_key, "csrftoken": csrf},
        "headers": {"X-CSRFToken": csrf, "Content-Type": "application/json"},
    }


async def run(args, standin_url: str, auth: dict, endpoint_base: str | None, server_pid=None) -> None:
    import httpx
    from django.conf import settings

    from conversations.realtime import upstream

    direct_body = upstream.client_secret_request(
        upstream.session_config(model=settings.REALTIME_MODEL, voice=settings.REALTIME_VOICE)
    )
    direct_headers = {"Authorization": f"Bearer {STANDIN_KEY}"}
    direct_url = f"{standin_url}/realtime/client_secrets"

    if endpoint_base is None:
        from voiceproject.asgi import application

        def app_client(**kwargs):
            transport = httpx.ASGITransport(application, client=("127.0.0.1", 50000))
            return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", **kwargs)
    else:

        def app_client(**kwargs):
            return httpx.AsyncClient(base_url=endpoint_base, **kwargs)

    endpoint = app_client(cookies=auth["cookies"], headers=auth["headers"])
    anonymous = app_client()  # the floor: the same URL and middleware, refused before any work
    direct = httpx.AsyncClient()

    async def measure(send, expected_status):
        """(wall time, CPU time of this whole process — every thread) of one call."""
        wall, cpu = time.perf_counter(), time.process_time()
        response = await send()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        assert response.status_code == expected_status, response.text
        return wall, cpu

    def one_direct():
        return measure(lambda: direct.post(direct_url, json=direct_body, headers=direct_headers), 200)

    def one_endpoint():
        return measure(lambda: endpoint.post("/api/realtime/sessions", content=b"{}"), 201)

    def one_anonymous():
        return measure(lambda: anonymous.post("/api/realtime/sessions", content=b"{}"), 401)

    for _ in range(args.warmup):
        await one_direct()
        await one_endpoint()
        await one_anonymous()

    direct_runs, endpoint_runs, anonymous_runs = [], [], []
    for i in range(args.keys):
        # Alternate which goes first, so neither always runs on a warmer path.
        if i % 2:
            direct_runs.append(await one_direct())
            endpoint_runs.append(await one_endpoint())
        else:
            endpoint_runs.append(await one_endpoint())
            direct_runs.append(await one_direct())
        anonymous_runs.append(await one_anonymous())
    direct_times, endpoint_times, anonymous_times = ([w for w, _ in runs] for runs in (direct_runs, endpoint_runs,
                                                                                         anonymous_runs))

    server_cpu = None
    if server_pid:  # daphne: its CPU per key (psutil counts in clock ticks: totals over a series)
        import psutil

        server = psutil.Process(server_pid)

        async def server_cpu_per_call(call):
            before = sum(server.cpu_times()[:2])
            for _ in range(args.keys):
                await call()
            return (sum(server.cpu_times()[:2]) - before) / args.keys

        server_cpu = (await server_cpu_per_call(one_endpoint), await server_cpu_per_call(one_anonymous))

    async def throughput(call, n, concurrency):
        queue = iter(range(n))

        async def worker():
            for _ in queue:
                await call()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return n / (time.perf_counter() - started)

    direct_rate = await throughput(one_direct, args.keys, args.concurrency)
    endpoint_rate = await throughput(one_endpoint, args.keys, args.concurrency)
    await endpoint.aclose()
    await anonymous.aclose()
    await direct.aclose()

    overhead = [(e - d) * 1000 for e, d in zip(endpoint_times, direct_times)]
    ms = lambda seconds: seconds * 1000  # noqa: E731
    print(f"server: {'daphne' if endpoint_base else 'in-process ASGI'}; keys per series: {args.keys}")
    print(f"direct call median: {ms(statistics.median(direct_times)):.2f} ms")
    print(f"endpoint call median: {ms(statistics.median(endpoint_times)):.2f} ms")
    print(f"endpoint overhead per key, median: {statistics.median(overhead):.2f} ms")
    print(f"endpoint overhead per key, p99: {percentile(overhead, 99):.2f} ms")
    floor = ms(statistics.median(anonymous_times))
    print(f"of which Django's request handling alone (anonymous 401, same URL), median: {floor:.2f} ms")
    print(f"endpoint overhead beyond that (sign-in lookup, limits, record), median: "
          f"{statistics.median(overhead) - floor:.2f} ms")
    if server_cpu is None:
        cpu_overhead = ms(statistics.median(c for _, c in endpoint_runs) - statistics.median(c for _, c in direct_runs))
        floor_cpu = ms(statistics.median(c for _, c in anonymous_runs))
        print(f"endpoint CPU per key beyond the direct call (this process, all threads), median: {cpu_overhead:.2f} ms")
        print(f"of which Django's request handling alone, CPU, median: {floor_cpu:.2f} ms")
    else:
        print(f"daphne CPU per key (whole request, upstream call included): {ms(server_cpu[0]):.2f} ms")
        print(f"daphne CPU per anonymous 401 (Django's request handling alone): {ms(server_cpu[1]):.2f} ms")
    print(f"direct keys per second (one at a time): {1 / statistics.mean(direct_times):.0f}")
    print(f"endpoint keys per second (one at a time): {1 / statistics.mean(endpoint_times):.0f}")
    print(f"direct keys per second ({args.concurrency} concurrent): {direct_rate:.0f}")
    print(f"endpoint keys per second ({args.concurrency} concurrent): {endpoint_rate:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=300, help="measured keys per series (default %(default)s)")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=8, help="for the keys-per-second series")
    parser.add_argument("--daphne", action="store_true", help="serve the app with daphne in its own process")
    args = parser.parse_args()

    children = []
    with tempfile.TemporaryDirectory(prefix="bench-keys-") as workdir:
        try:
            port = free_port()
            standin = subprocess.Popen(
                [sys.executable, "-m", "tests.realtime_standin", "--port", str(port), "--api-key", STANDIN_KEY, "--quiet"],
                cwd=ROOT, stdout=subprocess.DEVNULL,
            )
            children.append(standin)
            wait_for_port(port, standin, "the stand-in")
            standin_url = f"http://127.0.0.1:{port}/v1"
            configure_environment(standin_url, workdir)
            auth = prepare_database()

            endpoint_base = None
            if args.daphne:
                app_port = free_port()
                daphne = subprocess.Popen(
                    [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(app_port), "voiceproject.asgi:application"],
                    cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
                children.append(daphne)
                wait_for_port(app_port, daphne, "daphne")
                endpoint_base = f"http://127.0.0.1:{app_port}"
            asyncio.run(run(args, standin_url, auth, endpoint_base, daphne.pid if args.daphne else None))
        finally:
            for child in reversed(children):
                child.terminate()
                child.wait(10)


if __name__ == "__main__":
    main()

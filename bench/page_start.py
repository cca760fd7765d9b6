"""
How long the voice page takes from pressing Start to an open `oai-events` data channel,
against the least a page can do (bench/bare_page.html) — same browser, same stand-in, same run —
and how many bytes of its own JavaScript and CSS it ships.

    .venv/bin/python bench/page_start.py [--rounds 20]

Starts the Realtime stand-in (in this process), a daphne server with the app on a throw-away
SQLite database, a tiny server for the bare page (its /token mints a key at the stand-in, as
the tutorial's server does), and headless Chromium (/usr/bin/chromium, fake microphone). The
two pages take turns, so the machine's noise hits both alike. Both pages mark `voice:start` on
the click and `voice:open` when the channel opens (performance.mark); the figure is the time
between the two marks.

Ours does more on the way: a signed-in, CSRF-checked, rate-limited key request that records a
conversation in the database, and it opens the transcript socket alongside. Target: ours within
1.5× of the bare page; JS + CSS ≤ 60 KB.
"""

import argparse
import asyncio
import gzip
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiohttp import ClientSession, web  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from tests.realtime_standin import RealtimeStandIn  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required", "--allow-loopback-in-peer-connection",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1, EXCLUDE localhost",
    "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
PASSWORD = "bench-" + secrets.token_urlsafe(12)
ELAPSED = "() => performance.measure('start', 'voice:start', 'voice:open').duration"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"daphne exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    sys.exit("daphne did not start")


def start_app(standin: RealtimeStandIn, workdir: str) -> tuple[subprocess.Popen, str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"sqlite:///{workdir}/bench.sqlite3",
        "OPENAI_BASE_URL": standin.url,
        "OPENAI_API_KEY": standin.api_key,
        "KEY_RATE_LIMIT_PER_USER": "1000000/minute",
        "KEY_RATE_LIMIT_PER_IP": "1000000/minute",
        "KEY_DAILY_LIMIT_PER_USER": "1000000/day",
        "LOG_LEVEL": "ERROR",
    }
    env.pop("REDIS_URL", None)
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run(manage + ["migrate", "-v", "0"], env=env, check=True, cwd=ROOT)
    subprocess.run(manage + ["shell", "-c", f"from tests.support.factories import make_user; make_user('bench', {PASSWORD!r})"],
                   env=env, check=True, cwd=ROOT)
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                                "voiceproject.asgi:application"], env=env, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, process)
    return process, f"http://127.0.0.1:{port}"


def start_bare_server(standin: RealtimeStandIn) -> str:
    """The bare page and its /token endpoint, served on the stand-in's event loop."""
    page = (Path(__file__).parent / "bare_page.html").read_text()
    port = free_port()

    async def index(request):
        return web.Response(text=page, content_type="text/html")

    async def token(request):
        body = {"session": {"type": "realtime", "model": "gpt-realtime-2.1", "audio": {"output": {"voice": "marin"}}}}
        async with ClientSession() as session:
            async with session.post(f"{standin.url}/realtime/client_secrets", json=body,
                                    headers={"Authorization": f"Bearer {standin.api_key}"}) as response:
                data = await response.json()
        return web.json_response({"value": data["value"], "calls_url": f"{standin.url}/realtime/calls"})

    async def serve():
        app = web.Application()
        app.add_routes([web.get("/", index), web.post("/token", token)])
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()

    asyncio.run_coroutine_threadsafe(serve(), standin.loop).result(10)
    return f"http://127.0.0.1:{port}/"


def time_ours(page) -> float:
    page.evaluate("() => { performance.clearMarks(); performance.clearMeasures(); }")
    page.get_by_role("button", name="Start").click()
    page.wait_for_function("() => performance.getEntriesByName('voice:open').length > 0")
    elapsed = page.evaluate(ELAPSED)
    page.get_by_role("button", name="Stop").click()
    page.locator("#voice[data-phase='ended']").wait_for()
    return elapsed


def time_bare(page, url: str) -> float:
    page.goto(url)
    page.get_by_role("button", name="Start").click()
    page.wait_for_function("() => performance.getEntriesByName('voice:open').length > 0")
    elapsed = page.evaluate(ELAPSED)
    page.evaluate("() => window.stopSession()")
    return elapsed


def asset_bytes() -> tuple[int, int]:
    # The page's own modules and styles, and those it shares with the history pages (static/common/).
    folders = [ROOT / "static" / "voice", ROOT / "static" / "common"]
    files = sorted(f for folder in folders for pattern in ("*.js", "*.css") for f in folder.glob(pattern))
    raw = sum(f.stat().st_size for f in files)
    compressed = sum(len(gzip.compress(f.read_bytes(), 9)) for f in files)
    return raw, compressed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="timed starts per page (after 2 warm-ups)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as workdir, RealtimeStandIn() as standin:
        app, app_url = start_app(standin, workdir)
        bare_url = start_bare_server(standin)
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
                ours_page = browser.new_page()
                ours_page.goto(app_url + "/accounts/login/")
                ours_page.get_by_label("Username").fill("bench")
                ours_page.get_by_label("Password").fill(PASSWORD)
                ours_page.get_by_role("button", name="Log in").click()
                ours_page.goto(app_url + "/chat/")
                bare_page = browser.new_page()
                ours, bare = [], []
                for i in range(args.rounds + 2):
                    o, b = time_ours(ours_page), time_bare(bare_page, bare_url)
                    if i >= 2:
                        ours.append(o)
                        bare.append(b)
                browser.close()
        finally:
            app.terminate()
            app.wait(10)

    raw, compressed = asset_bytes()
    ours_median, bare_median = statistics.median(ours), statistics.median(bare)
    print(f"start_to_channel_open_ours_median_ms {ours_median:.1f}")
    print(f"start_to_channel_open_bare_median_ms {bare_median:.1f}")
    print(f"start_to_channel_open_ratio_ours_to_bare {ours_median / bare_median:.2f}  (target <= 1.5)")
    print(f"start_to_channel_open_ours_p90_ms {statistics.quantiles(ours, n=10)[-1]:.1f}")
    print(f"start_to_channel_open_bare_p90_ms {statistics.quantiles(bare, n=10)[-1]:.1f}")
    print(f"page_js_css_bytes {raw}  (target <= 61440)")
    print(f"page_js_css_gzip_bytes {compressed}")


if __name__ == "__main__":
    main()

"""
Browser tests: Playwright (sync API) driving the Debian Chromium against a live daphne server
that runs the real ASGI application on the test database, and the Realtime stand-in (its
WebRTC peer included) in a thread of this process. Facts: docs/testing.md.

Everything here is committed data (transactional tests): the server is another process.
"""

import array
import math
import os
import time
import wave
from pathlib import Path

import pytest

from tests.support.browser import sign_in
from tests.support.factories import make_user
from tests.support.processes import (
    ARTIFACTS,
    LiveServer,
    server_environment,
    wait_for_server_sessions_to_close,
    wait_until_server_idle,
)

# Playwright's sync API runs an event loop in this thread; the ORM calls of the tests are
# ordinary blocking calls all the same.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = "/usr/bin/chromium"


HERE = Path(__file__).parent


def pytest_itemcollected(item):
    """Mark the browser tests as they are collected, so that `-m browser` selects them."""
    if HERE in Path(item.fspath).parents:
        item.add_marker(pytest.mark.browser)


@pytest.hookimpl(trylast=True)  # after pytest-django's own reordering by kind of database use
def pytest_collection_modifyitems(config, items):
    """Run the browser tests last: from the first one on, Playwright's sync API keeps an event
    loop running in the main thread until the session ends, and asyncio.run() (the async tests
    elsewhere) refuses to start inside it."""
    browser = [item for item in items if HERE in Path(item.fspath).parents]
    items[:] = [item for item in items if item not in browser] + browser


# --- The browser ------------------------------------------------------------------------------

def _write_fake_voice(path: Path) -> Path:
    """A microphone recording for Chromium's fake capture device (the default one is nearly
    silent): voice-like bursts with short pauses; Chromium loops it."""
    rate = 48000
    samples = array.array("h")
    for i in range(rate * 3):
        t = i / rate
        if t < 2.5:
            envelope = 0.25 + 0.75 * abs(math.sin(2 * math.pi * 2.2 * t))
            x = math.sin(2 * math.pi * 165 * t) + 0.45 * math.sin(2 * math.pi * 330 * t) + 0.2 * math.sin(2 * math.pi * 495 * t)
            samples.append(int(22000 * envelope * x / 1.65))
        else:
            samples.append(0)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return path


@pytest.fixture(scope="session")
def fake_voice(tmp_path_factory):
    return _write_fake_voice(tmp_path_factory.mktemp("audio") / "voice.wav")


CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--allow-loopback-in-peer-connection",
    # Nothing resolves but the loopback names: no mDNS, no internet.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1, EXCLUDE localhost",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser_type_launch_args(fake_voice):
    # No --use-fake-ui-for-media-stream: the microphone is granted (or not) per context, so
    # that "microphone denied" can be tested in the same browser.
    return {
        "executable_path": CHROMIUM,
        "headless": True,
        "args": CHROMIUM_ARGS + [f"--use-file-for-fake-audio-capture={fake_voice}"],
    }


@pytest.fixture(scope="session")
def browser_context_args():
    return {"permissions": ["microphone"], "viewport": {"width": 1280, "height": 860}}


@pytest.fixture(scope="session")
def output_path():
    return str(ARTIFACTS / "playwright")


@pytest.fixture(scope="session")
def artifacts():
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


# --- The live server ----------------------------------------------------------------------------

def _live_server(standin, django_db_blocker, log: str | None = None, **overrides: str):
    env = server_environment(
        OPENAI_BASE_URL=standin.url,
        OPENAI_API_KEY=standin.api_key,
        # Every test signs in a new user, but they all come from 127.0.0.1.
        KEY_RATE_LIMIT_PER_IP="100000/minute",
        **overrides,
    )
    with LiveServer(env, **({"log": ARTIFACTS / log} if log else {})) as server:
        yield server
    with django_db_blocker.unblock():
        wait_for_server_sessions_to_close()


@pytest.fixture(scope="session")
def _daphne_server(django_db_setup, django_db_blocker, _realtime_standin_server):
    yield from _live_server(_realtime_standin_server, django_db_blocker)


@pytest.fixture(scope="session")
def _daphne_server_mode_server(django_db_setup, django_db_blocker, _realtime_standin_server):
    """A second server, started only by the tests that ask for server mode (starts are slow)."""
    yield from _live_server(_realtime_standin_server, django_db_blocker, log="daphne-server-mode.log",
                            REALTIME_CONNECT="server")


def _ready(server, standin):
    """The running server (restarted if a test killed it) and a wiped stand-in, for one test."""
    server.ensure_running()
    standin.reset()
    yield server
    standin.reset()
    wait_until_server_idle()


@pytest.fixture
def daphne_server(_daphne_server, transactional_db, _realtime_standin_server):
    """The running server (REALTIME_CONNECT=browser, the default) and a wiped stand-in. Request
    it before `page`, so that the page (and its sockets) is closed before the tables are emptied."""
    yield from _ready(_daphne_server, _realtime_standin_server)


@pytest.fixture
def server_mode_server(_daphne_server_mode_server, transactional_db, _realtime_standin_server):
    """As `daphne_server`, but with REALTIME_CONNECT=server: the server makes the calls."""
    yield from _ready(_daphne_server_mode_server, _realtime_standin_server)


@pytest.fixture
def standin(_realtime_standin_server):
    return _realtime_standin_server


# --- Signed-in pages ----------------------------------------------------------------------------

@pytest.fixture
def user(daphne_server):
    return make_user(username=f"user{time.monotonic_ns()}")


def _open_chat(server, user, page):
    sign_in(page.context, user, server.url)
    page.errors, page.console_errors = [], []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.on("console", lambda message: message.type == "error" and page.console_errors.append(message.text))
    page.set_default_timeout(10_000)
    page.goto(server.url + "/chat/")
    page.get_by_role("button", name="Start").wait_for()
    yield page
    page.context.close()  # no more traffic from the browser before the tables are emptied


def _new_user_on_chat(server, standin, page, username: str):
    """For a module's own server (as `_live_server(...)` with other settings): the server ready, a
    new user signed in on /chat/. Yields (page, user); use it as a fixture's body with `yield from`."""
    for ready in _ready(server, standin):
        user = make_user(username=username)
        for opened in _open_chat(ready, user, page):
            yield opened, user


@pytest.fixture
def chat_page(daphne_server, user, page):
    """A signed-in user on /chat/. Uncaught script errors are collected in page.errors, console
    errors (failed socket connections among them, when a test cuts the server) in page.console_errors."""
    yield from _open_chat(daphne_server, user, page)


@pytest.fixture
def server_mode_user(server_mode_server):
    return make_user(username=f"user{time.monotonic_ns()}")


@pytest.fixture
def server_mode_chat_page(server_mode_server, server_mode_user, page):
    """As `chat_page`, on the server-mode server, signed in as `server_mode_user`."""
    yield from _open_chat(server_mode_server, server_mode_user, page)

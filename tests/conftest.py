import pytest


@pytest.fixture(autouse=True)
def _fresh_rate_limits(settings):
    """Each test starts with no rate-limit counters (they live in process memory or Redis)."""
    from conversations.transcript import sockets
    from voiceproject import ratelimit

    ratelimit.reset()
    sockets.reset()
    yield
    ratelimit.reset()
    sockets.reset()


@pytest.fixture(scope="session")
def _realtime_standin_server():
    from tests.realtime_standin import RealtimeStandIn

    with RealtimeStandIn() as server:
        yield server


@pytest.fixture
def realtime_standin(_realtime_standin_server, settings):
    """
    The offline Realtime stand-in (tests/realtime_standin/) on a free port, with the app's
    OPENAI_BASE_URL and OPENAI_API_KEY pointing at it. One server per test run, wiped for
    each test: `.url`, `.api_key`, `.fail_next(...)`, `.requests`, `.issued`.
    """
    server = _realtime_standin_server
    server.reset()
    settings.OPENAI_BASE_URL = server.url
    settings.OPENAI_API_KEY = server.api_key
    yield server
    server.reset()


@pytest.fixture(scope="session", autouse=True)
def _close_connections_left_by_async_tests(django_db_setup):
    """Async tests run their database calls in asgiref's single shared thread (no server, so no
    per-request thread), and the connections opened there outlive the tests. Close them
    before the test database is dropped, which PostgreSQL refuses while a session uses it."""
    yield
    from asgiref.sync import SyncToAsync
    from django.db import connections

    SyncToAsync.single_thread_executor.submit(connections.close_all).result()


@pytest.fixture
def recordings_dir(settings, tmp_path):
    """Each test's recordings go to a folder of its own (tests/support/recordings.py)."""
    from tests.support.recordings import use_recordings_dir

    return use_recordings_dir(settings, tmp_path / "recordings")


@pytest.fixture
def openai(settings, monkeypatch):
    """OpenAI's /realtime/calls as a FakeOpenAI (tests/support/server_calls.py): `.requests`, `.reply`."""
    from tests.support.server_calls import use_fake_openai

    return use_fake_openai(settings, monkeypatch)


@pytest.fixture
def server_mode(settings):
    settings.REALTIME_CONNECT = "server"


# --- users and signed-in clients, shared by the tests of several files ------------------------

@pytest.fixture
def alice():
    from tests.support.factories import make_user

    return make_user("alice")


@pytest.fixture
def bob():
    from tests.support.factories import make_user

    return make_user("bob")


@pytest.fixture
def reviewer():
    """Staff with every permission (a superuser), as the admin's reviewer."""
    from tests.support.factories import make_superuser

    return make_superuser("reviewer")


@pytest.fixture
def alice_client(client, alice):
    client.force_login(alice)
    return client


@pytest.fixture
def staff_client(client, reviewer):
    client.force_login(reviewer)
    return client

"""
Other processes on the test database: daphne serving the real ASGI application
(voiceproject.asgi), for the tests that need real HTTP and WebSocket connections (the browser
tests and the cross-process checks), and `manage.py` commands run as an operator would.

They use pytest-django's test database (`database_url()`), so the tests that use them are
transactional: what they write must be committed for another process to see it.
"""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_url() -> str:
    """pytest-django's test database (it must exist: request `django_db_setup`) as a DATABASE_URL."""
    from django.db import connection

    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    return urlunsplit(urlsplit(os.environ["DATABASE_URL"])._replace(path="/" + db["NAME"]))



def server_environment(**overrides: str) -> dict:
    """This process's environment for a server on the test database, with `overrides`."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url(),
        "PYTHONUNBUFFERED": "1",
        **overrides,
    }


class LiveServer:
    """daphne on a free port of 127.0.0.1, as another process; restartable. Its output goes to `log`."""

    def __init__(self, env: dict, log: Path = ARTIFACTS / "daphne.log", app: str = "voiceproject.asgi:application"):
        self.port = free_port()
        self.app = app
        self.env = env
        self.log = log
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port),
                 self.app],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"daphne exited with {self.process.returncode}; see {self.log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"daphne did not listen on {self.port} within 30 s; see {self.log}")

    def stop(self) -> None:
        """Kill it the hard way — as a crash would: open sockets just drop."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def ensure_running(self) -> None:
        if not self.process or self.process.poll() is not None:
            self.start()

    def __enter__(self) -> "LiveServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _server_sessions(cursor, *, busy_only: bool) -> int:
    """Other sessions on the test database (the servers'), or only those not idle."""
    cursor.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        + (" AND state <> 'idle'" if busy_only else "")
    )
    return cursor.fetchone()[0]


def wait_until_server_idle(timeout: float = 5.0) -> None:
    """Before pytest-django empties the tables (TRUNCATE on PostgreSQL), let the server finish
    what the closed pages left it (a socket's last writes): TRUNCATE against a transaction in
    flight can deadlock. SQLite writers simply queue, so only PostgreSQL needs this."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    deadline = time.monotonic() + timeout
    quiet = 0
    with connection.cursor() as cursor:
        while time.monotonic() < deadline and quiet < 4:  # quiet for 4 polls in a row
            quiet = quiet + 1 if _server_sessions(cursor, busy_only=True) == 0 else 0
            time.sleep(0.05)


def wait_for_server_sessions_to_close(timeout: float = 10.0) -> None:
    """After stopping servers: PostgreSQL ends a dead client's sessions a moment later, and until
    then it refuses to drop the test database ("being accessed by other users")."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline and _server_sessions(cursor, busy_only=False):
            time.sleep(0.05)


def run_python(code: str, **env_overrides: str) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter with the production settings (voiceproject.settings) and only
    `env_overrides` of the settings' variables: how the app starts where it is deployed."""
    ours = ("DJANGO_", "DATABASE_", "REDIS_", "SECRET_", "DEBUG", "OPENAI_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    env.update({"DJANGO_SETTINGS_MODULE": "voiceproject.settings", **env_overrides})
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def run_manage(*args, database=False, **kwargs):
    """`manage.py` in a fresh interpreter with the test settings; returns the CompletedProcess."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_"))}
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    if database:
        env["DATABASE_URL"] = database_url()
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=120,
        **kwargs,
    )


# --- Two servers of one deployment (the cluster tests) -----------------------------------------


def cluster_marks() -> list:
    """The marks of a module of cluster tests: async, transactional, and skipped unless the
    servers can share state (PostgreSQL for the database, Redis for the channel layer and limits)."""
    import pytest
    from django.conf import settings

    return [
        pytest.mark.cluster,
        pytest.mark.django_db(transaction=True),
        pytest.mark.asyncio,
        pytest.mark.skipif(
            settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql" or not settings.REDIS_URL,
            reason="needs PostgreSQL (DATABASE_URL) and Redis (REDIS_URL)",
        ),
    ]


def two_servers(name: str, django_db_blocker, standin, **overrides: str):
    """Two daphne processes on the test database, PostgreSQL and Redis, calling `standin` for
    OpenAI; yields (a, b) and waits for their database sessions to close after. Logs go to
    test-artifacts/<name>/. Use it as a fixture's body: `yield from two_servers(…)`."""
    from django.conf import settings

    env = server_environment(
        REDIS_URL=settings.REDIS_URL,
        DATABASE_POOL="true",
        OPENAI_BASE_URL=standin.url,
        OPENAI_API_KEY=standin.api_key,
        KEY_RATE_LIMIT_PER_IP="100000/minute",  # every request comes from 127.0.0.1
        **overrides,
    )
    with (
        LiveServer(env, log=ARTIFACTS / name / "daphne-a.log") as a,
        LiveServer(env, log=ARTIFACTS / name / "daphne-b.log") as b,
    ):
        yield a, b
    with django_db_blocker.unblock():
        wait_for_server_sessions_to_close()

"""The environment switches of settings.py, checked in fresh interpreters."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from tests.support.processes import run_python

ROOT = Path(__file__).resolve().parent.parent

PRINT_CONFIG = """
import json, django
from django.conf import settings
django.setup()
print(json.dumps({
    "engine": settings.DATABASES["default"]["ENGINE"],
    "db_name": settings.DATABASES["default"]["NAME"],
    "layer": settings.CHANNEL_LAYERS["default"]["BACKEND"],
    "cache": settings.CACHES["default"]["BACKEND"],
    "ratelimit": settings.RATELIMIT_STORAGE_URI,
    "connect_src": settings.CONTENT_SECURITY_POLICY["DIRECTIVES"]["connect-src"],
    "pool": settings.DATABASES["default"].get("OPTIONS", {}).get("pool"),
}))
"""


def config(**env):
    result = run_python(PRINT_CONFIG, SECRET_KEY="x" * 50, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_defaults_are_sqlite_and_in_memory():
    cfg = config()
    assert cfg["engine"] == "django.db.backends.sqlite3"
    assert cfg["db_name"].endswith("db.sqlite3")
    assert cfg["layer"] == "channels.layers.InMemoryChannelLayer"
    assert cfg["cache"] == "django.core.cache.backends.locmem.LocMemCache"
    assert cfg["ratelimit"] == "memory://"


def test_database_url_selects_postgresql():
    cfg = config(DATABASE_URL="postgres://u:p@db.example:5432/voice")
    assert cfg["engine"] == "django.db.backends.postgresql"
    assert cfg["db_name"] == "voice"


def test_database_pool_is_off_by_default_and_sized_by_the_environment():
    postgres = "postgres://u:p@db.example:5432/voice"
    assert config(DATABASE_URL=postgres)["pool"] is None
    assert config(DATABASE_URL=postgres, DATABASE_POOL="true")["pool"] == {"min_size": 2, "max_size": 10}
    assert config(DATABASE_URL=postgres, DATABASE_POOL="true", DATABASE_POOL_MAX_SIZE="4")["pool"]["max_size"] == 4


@pytest.mark.parametrize(
    "env, message",
    [
        ({}, "needs PostgreSQL"),
        ({"DATABASE_URL": "postgres://u:p@db.example:5432/voice", "CONN_MAX_AGE": "60"}, "leave CONN_MAX_AGE at 0"),
    ],
)
def test_database_pool_misconfigurations_are_refused_at_start(env, message):
    result = run_python("import django; django.setup()", SECRET_KEY="x" * 50, DATABASE_POOL="true", **env)
    assert result.returncode != 0
    assert message in result.stderr


def test_storage_bounds_have_defaults_and_are_validated_at_start():
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.TRANSCRIPT_MAX_BYTES_PER_CONVERSATION, s.TRANSCRIPT_MAX_BYTES_PER_USER_PER_DAY, "
        "s.TRANSCRIPT_MAX_EVENT_NON_TEXT_BYTES, s.CONVERSATION_LATE_EVENTS_SECONDS)"
    )
    result = run_python(code, SECRET_KEY="x" * 50)
    assert result.stdout.split() == [str(20 * 2**20), str(100 * 2**20), str(16 * 2**10), "120"]
    for env, message in [
        ({"TRANSCRIPT_MAX_BYTES_PER_CONVERSATION": "1000"}, "must be at least TRANSCRIPT_MAX_FRAME_BYTES"),
        ({"TRANSCRIPT_MAX_BYTES_PER_USER_PER_DAY": "262143"}, "must be at least TRANSCRIPT_MAX_FRAME_BYTES"),
        ({"TRANSCRIPT_MAX_EVENT_NON_TEXT_BYTES": "100"}, "TRANSCRIPT_MAX_EVENT_NON_TEXT_BYTES must be at least 1024"),
        ({"CONVERSATION_LATE_EVENTS_SECONDS": "-1"}, "CONVERSATION_LATE_EVENTS_SECONDS at least 0"),
    ]:
        result = run_python("import django; django.setup()", SECRET_KEY="x" * 50, **env)
        assert result.returncode != 0 and message in result.stderr, env


def test_redis_url_selects_redis_layer_cache_and_counters():
    cfg = config(REDIS_URL="redis://cache.example:6379/2")
    assert cfg["layer"] == "channels_redis.core.RedisChannelLayer"
    assert cfg["cache"] == "django.core.cache.backends.redis.RedisCache"
    assert cfg["ratelimit"] == "redis://cache.example:6379/2"


def test_csp_allows_the_openai_origin():
    cfg = config(OPENAI_BASE_URL="https://api.openai.com/v1")
    assert cfg["connect_src"] == ["'self'", "https://api.openai.com"]


def test_missing_secret_key_in_production_is_a_clear_error():
    result = run_python("import django; django.setup()", DEBUG="false")
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_debug_runs_without_a_secret_key():
    assert run_python("import django; django.setup()", DEBUG="true").returncode == 0


def test_unknown_model_is_refused_at_start():
    result = run_python("import django; django.setup()", SECRET_KEY="x" * 50, REALTIME_MODEL="gpt-4o-realtime-preview")
    assert result.returncode != 0
    assert "is not in REALTIME_MODELS" in result.stderr


def test_check_deploy_is_clean_for_a_production_environment():
    """The environment of docs/deploy.md (nothing is contacted: check does not connect)."""
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={
            "PATH": os.environ["PATH"],
            "SECRET_KEY": "a-long-random-production-secret-" + "k3y" * 20,
            "ALLOWED_HOSTS": "voice.example.com",
            "CSRF_TRUSTED_ORIGINS": "https://voice.example.com",
            "DEBUG": "false",
            "DATABASE_URL": "postgres://voice:secret@db.internal:5432/voice",
            "DATABASE_POOL": "true",
            "REDIS_URL": "redis://redis.internal:6379/0",
            "SECURE_PROXY_SSL_HEADER": "true",
            "NUM_PROXIES": "1",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.django_db
@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite pragmas")
def test_sqlite_pragmas_are_in_effect():
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"
        cursor.execute("PRAGMA busy_timeout")
        assert cursor.fetchone()[0] == 20000
    assert connection.transaction_mode == "IMMEDIATE"


def test_security_headers_and_csp_on_every_page(client):
    response = client.get("/accounts/login/")
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp
    assert "connect-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.django_db
def test_permissions_policy_allows_the_microphone_to_the_site_only(client):
    from tests.support.factories import make_user

    client.force_login(make_user())
    for path in ("/accounts/login/", "/chat/"):
        policy = client.get(path).headers["Permissions-Policy"]
        features = dict(item.split("=", 1) for item in policy.split(", "))
        assert features["microphone"] == "(self)"  # the voice page; no embedded frame, no other origin
        for denied in ("camera", "geolocation", "payment", "usb", "display-capture"):
            assert features[denied] == "()"


def test_the_csrf_cookie_is_out_of_reach_of_scripts(client):
    response = client.get("/accounts/login/")
    cookie = response.cookies["csrftoken"]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"


@pytest.mark.django_db
def test_the_voice_page_carries_the_csrf_token_for_its_script(realtime_standin):
    """With the cookie HttpOnly, chat.js posts the token it finds in the page (data-csrf)."""
    import re

    from tests.support.api import post_session
    from tests.support.factories import make_user, signed_in

    client = signed_in(make_user(), enforce_csrf_checks=True)
    page = client.get("/chat/").content.decode()
    token = re.search(r'id="voice"[^>]*data-csrf="([^"]+)"', page).group(1)
    assert post_session(client).status_code == 403
    assert post_session(client, HTTP_X_CSRFTOKEN=token).status_code == 201


@pytest.mark.parametrize(
    "env, message",
    [
        ({"MAX_SOCKETS_PER_USER": "0"}, "MAX_SOCKETS_PER_USER and MAX_SOCKETS_PER_CONVERSATION must be at least 1"),
        ({"MAX_SOCKETS_PER_CONVERSATION": "-1"}, "must be at least 1"),
        ({"TRANSCRIPT_FRAMES_PER_SECOND_PER_USER": "-5"}, "TRANSCRIPT_FRAMES_PER_SECOND_PER_USER must be at least 0"),
        ({"SOCKET_SLOT_TTL": "1"}, "SOCKET_SLOT_TTL must be at least 3"),
        ({"MAX_SOCKETS_PER_USER": "many"}, "invalid literal"),
    ],
)
def test_socket_bounds_are_validated_at_start(env, message):
    result = run_python("import django; django.setup()", SECRET_KEY="x" * 50, **env)
    assert result.returncode != 0
    assert message in result.stderr


def setting_at_start(name, value):
    """The setting `name` as Django reads it at start, with `value` in the environment (None: unset)."""
    env = {"SECRET_KEY": "x" * 50, **({name: value} if value is not None else {})}
    code = f"import django; django.setup(); from django.conf import settings; print(settings.{name})"
    result = run_python(code, **env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize("value, expected", [(None, "browser"), ("server", "server"), (" Server ", "server")])
def test_realtime_connect_defaults_to_browser(value, expected):
    assert setting_at_start("REALTIME_CONNECT", value) == expected


def test_unknown_realtime_connect_is_refused_at_start():
    result = run_python("import django; django.setup()", SECRET_KEY="x" * 50, REALTIME_CONNECT="proxy")
    assert result.returncode != 0
    assert "REALTIME_CONNECT must be browser or server" in result.stderr


@pytest.mark.parametrize("value, expected", [(None, "True"), ("false", "False"), (" TRUE ", "True"), ("0", "False")])
def test_realtime_witness_defaults_to_true(value, expected):
    assert setting_at_start("REALTIME_WITNESS", value) == expected


def test_a_misspelt_realtime_witness_is_refused_at_start():
    result = run_python("import django; django.setup()", SECRET_KEY="x" * 50, REALTIME_WITNESS="ture")
    assert result.returncode != 0
    assert "REALTIME_WITNESS must be true or false" in result.stderr


def test_each_check_of_the_conversations_app_has_an_id_of_its_own(settings):
    """Every setting the app checks, wrong at once: each mistake is reported under its own id, so
    an operator (or `SILENCED_SYSTEM_CHECKS`) can tell them apart."""
    from django.core import checks

    settings.REALTIME_VOICE = "nobody"
    settings.REALTIME_MAX_SESSION_SECONDS = 0
    settings.RECORDINGS = "maybe"
    settings.RECORDING_CHUNK_MS = 10
    settings.RECORDING_MAX_CHUNK_BYTES = 10
    settings.RECORDING_MAX_BYTES_PER_CONVERSATION = 5
    settings.RECORDING_MAX_BYTES_PER_USER = 1
    settings.RECORDINGS_STORAGE = "tape"
    settings.USER_DAILY_BUDGET_USD = "lots"
    settings.BUDGET_SESSION_RESERVE_USD = "-1"
    ids = [e.id for e in checks.run_checks() if e.id.startswith("conversations.")]
    assert len(ids) == 10
    assert len(set(ids)) == len(ids), sorted(ids)

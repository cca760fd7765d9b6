"""
Settings for voiceproject, read from the environment (django-environ).

Every variable is documented in `.env.example`. A `.env` file next to manage.py is read
when present; real environment variables win over it.
"""

from pathlib import Path
from urllib.parse import urlsplit

import environ
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured
from limits import parse as _parse_limit

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)

# A development key only when DEBUG is on: a production process must not start without one.
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set the SECRET_KEY environment variable (for example "
            "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`), or set DEBUG=true "
            "for local development."
        )
    SECRET_KEY = "django-insecure-development-only-key-do-not-use-in-production"

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",  # first, so that `runserver` serves ASGI (HTTP and WebSockets)
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "csp",
    "accounts",
    "conversations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django_permissions_policy.PermissionsPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "voiceproject.nulbytes.RejectNulMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
]

ROOT_URLCONF = "voiceproject.urls"
ASGI_APPLICATION = "voiceproject.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
# SQLite by default; DATABASE_URL (postgres://…) switches to PostgreSQL.
DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Concurrent writers (several sockets, the key view) must queue instead of failing with
    # "database is locked": WAL lets readers run beside the writer, IMMEDIATE takes the write
    # lock when the transaction starts (no deadlocking lock upgrades) and the timeout makes
    # writers wait for each other.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": env.int("SQLITE_BUSY_TIMEOUT", default=20),
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
# Under ASGI every request may run in a different thread: persistent connections would pile up
# one per thread, so they are off unless measured otherwise (see README, "Scaling out").
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0)
# PostgreSQL only: a pool of connections per process (psycopg_pool). A request, or a batch of
# socket frames, then borrows an open connection instead of opening one, which costs PostgreSQL
# a new backend process each time (bench/db_pool.py). The pool also caps the connections each
# process holds: N processes x DATABASE_POOL_MAX_SIZE must stay under max_connections.
if env.bool("DATABASE_POOL", default=False):
    if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured("DATABASE_POOL=true needs PostgreSQL (a postgres:// DATABASE_URL).")
    if DATABASES["default"]["CONN_MAX_AGE"]:
        raise ImproperlyConfigured(
            "DATABASE_POOL=true replaces persistent connections: leave CONN_MAX_AGE at 0."
        )
    _size = env.int("DATABASE_POOL_MAX_SIZE", default=10)
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {"min_size": min(2, _size), "max_size": _size}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Channel layer, cache, rate-limit storage -----------------------------------------------
# REDIS_URL switches all three to Redis so that several server processes share them.
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # No client-side socket timeout, on purpose. channels_redis blocks in BZPOPMIN for 5 s
            # and Redis itself ends that wait, so none is needed. And any timeout breaks it:
            # redis-py 8's default of 5 s kills idle consumers with "Timeout reading from …"
            # (django/channels_redis#422), and with a timeout set, redis-py wraps every write in
            # asyncio.wait_for. On Python 3.11, wait_for swallows a cancellation that arrives
            # just as the write completes (CPython gh-86296). A consumer closed at that instant
            # then keeps polling BZPOPMIN forever, and its event loop never shuts down.
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": None}]},
        }
    }
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
    RATELIMIT_STORAGE_URI = REDIS_URL
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    RATELIMIT_STORAGE_URI = "memory://"

# --- Authentication -------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "chat"
LOGOUT_REDIRECT_URL = "login"

# Failed log-ins allowed before the form refuses to try (limits' notation, e.g. "5/15minute").
LOGIN_FAILURE_LIMIT_PER_ACCOUNT = env.str("LOGIN_FAILURE_LIMIT_PER_ACCOUNT", default="5/15minute")
LOGIN_FAILURE_LIMIT_PER_IP = env.str("LOGIN_FAILURE_LIMIT_PER_IP", default="20/15minute")
# Accounts created per client address (IPv6: per /64). A household or office behind one address
# rarely opens more than a few accounts in an hour, while a script is held to 5 an hour instead
# of several a second; raise it for, say, a classroom signing up together behind one NAT.
SIGNUP_RATE_LIMIT_PER_IP = env.str("SIGNUP_RATE_LIMIT_PER_IP", default="5/hour")
# Sign-up posts per client address, successful or not: each failed one still costs a username
# lookup and the password validators, so a script must not post them without end. Generous enough
# that a person fighting the password rules for a while is never refused.
SIGNUP_ATTEMPT_LIMIT_PER_IP = env.str("SIGNUP_ATTEMPT_LIMIT_PER_IP", default="30/hour")
# Ephemeral OpenAI keys (POST /api/realtime/sessions): a burst limit per user and per client
# address, a daily cap per user, and a daily cap for the whole site (a ceiling on what many
# accounts together can spend, however they were made).
KEY_RATE_LIMIT_PER_USER = env.str("KEY_RATE_LIMIT_PER_USER", default="5/minute")
KEY_RATE_LIMIT_PER_IP = env.str("KEY_RATE_LIMIT_PER_IP", default="20/minute")
KEY_DAILY_LIMIT_PER_USER = env.str("KEY_DAILY_LIMIT_PER_USER", default="200/day")
KEY_DAILY_LIMIT_SITE = env.str("KEY_DAILY_LIMIT_SITE", default="2000/day")
for _name in (
    "LOGIN_FAILURE_LIMIT_PER_ACCOUNT",
    "LOGIN_FAILURE_LIMIT_PER_IP",
    "SIGNUP_RATE_LIMIT_PER_IP",
    "SIGNUP_ATTEMPT_LIMIT_PER_IP",
    "KEY_RATE_LIMIT_PER_USER",
    "KEY_RATE_LIMIT_PER_IP",
    "KEY_DAILY_LIMIT_PER_USER",
    "KEY_DAILY_LIMIT_SITE",
):
    try:
        _parse_limit(globals()[_name])
    except ValueError:
        raise ImproperlyConfigured(
            f"{_name}={globals()[_name]!r} is not a rate limit; write it like 5/minute or 200/day."
        ) from None
del _name
# How many reverse proxies sit in front of the app: the client address is then taken from
# X-Forwarded-For, counted from the right. 0 = use the socket's peer address.
NUM_PROXIES = env.int("NUM_PROXIES", default=0)

# --- OpenAI Realtime ------------------------------------------------------------------------
OPENAI_API_KEY = env.str("OPENAI_API_KEY", default="")
OPENAI_BASE_URL = env.str("OPENAI_BASE_URL", default="https://api.openai.com/v1").rstrip("/")
REALTIME_MODEL = env.str("REALTIME_MODEL", default="gpt-realtime-2.1")
REALTIME_MODELS = env.list("REALTIME_MODELS", default=["gpt-realtime-2.1", "gpt-realtime-2.1-mini"])
REALTIME_VOICE = env.str("REALTIME_VOICE", default="marin")
REALTIME_INSTRUCTIONS = env.str(
    "REALTIME_INSTRUCTIONS",
    default="You are a helpful, concise voice assistant. Speak naturally and keep answers short.",
)
REALTIME_TRANSCRIPTION_MODEL = env.str("REALTIME_TRANSCRIPTION_MODEL", default="gpt-4o-mini-transcribe")
REALTIME_KEY_TTL = env.int("REALTIME_KEY_TTL", default=60)
# Who makes the WebRTC call to OpenAI. browser: the page, with an ephemeral key, and it reports
# the call id on the transcript socket. server: the page posts its offer to /api/realtime/calls
# and the server makes the call with the real key (no key is handed out; the call id is certain).
REALTIME_CONNECT = env.str("REALTIME_CONNECT", default="browser").strip().lower()
# Seconds to wait for OpenAI when minting a key: to connect, and for each read of the answer.
REALTIME_CONNECT_TIMEOUT = env.float("REALTIME_CONNECT_TIMEOUT", default=5.0)
REALTIME_READ_TIMEOUT = env.float("REALTIME_READ_TIMEOUT", default=15.0)
# The witness (conversations/witness/): the server opens its own sideband connection to each
# live call (with OPENAI_API_KEY) and journals what it sees there. Checked at start.
_witness = env.str("REALTIME_WITNESS", default="true").strip().lower()
if _witness not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
    raise ImproperlyConfigured(f"REALTIME_WITNESS must be true or false, not {_witness!r}.")
REALTIME_WITNESS = _witness in ("true", "1", "yes", "on")
# The daily spending budget per user (conversations/budget.py): USD over the last 24 hours, at list
# prices, from the usage the server trusts; 0 = no budget. Staff can set another per user in the
# admin. A starting session holds BUDGET_SESSION_RESERVE_USD of it until it ends, so that sessions
# started at once cannot together overrun it. Read as text: conversations/checks.py refuses a bad
# value at start with a clear message.
USER_DAILY_BUDGET_USD = env.str("USER_DAILY_BUDGET_USD", default="5")
BUDGET_SESSION_RESERVE_USD = env.str("BUDGET_SESSION_RESERVE_USD", default="0.50")

# The longest a call may run: the server hangs up a call older than this (witness/hangup.py) and
# refuses to start another session of a conversation whose last one ran past it unseen. OpenAI's
# own maximum is 60 minutes. Read as text and checked by conversations/checks.py (1..3600), so
# a bad value stops start-up with a clear message instead of a traceback.
REALTIME_MAX_SESSION_SECONDS = env.str("REALTIME_MAX_SESSION_SECONDS", default="1800").strip()
if REALTIME_MAX_SESSION_SECONDS.isdigit():
    REALTIME_MAX_SESSION_SECONDS = int(REALTIME_MAX_SESSION_SECONDS)
if REALTIME_MODEL not in REALTIME_MODELS:
    raise ImproperlyConfigured(
        f"REALTIME_MODEL={REALTIME_MODEL!r} is not in REALTIME_MODELS ({', '.join(REALTIME_MODELS)})."
    )
if REALTIME_CONNECT not in ("browser", "server"):
    raise ImproperlyConfigured(f"REALTIME_CONNECT must be browser or server, not {REALTIME_CONNECT!r}.")
if not 10 <= REALTIME_KEY_TTL <= 7200:
    raise ImproperlyConfigured("REALTIME_KEY_TTL must be between 10 and 7200 seconds.")
if not (REALTIME_CONNECT_TIMEOUT > 0 and REALTIME_READ_TIMEOUT > 0):
    raise ImproperlyConfigured("REALTIME_CONNECT_TIMEOUT and REALTIME_READ_TIMEOUT must be positive.")

# --- Transcript socket ----------------------------------------------------------------------
# Largest frame accepted on /ws/conversations/<uuid>/ (bytes; larger frames are answered with an
# `error`, not stored) and longest transcript or text field in an event (characters; longer ones
# are cut, and the event records it).
TRANSCRIPT_MAX_FRAME_BYTES = env.int("TRANSCRIPT_MAX_FRAME_BYTES", default=256 * 1024)
TRANSCRIPT_MAX_CHARS = env.int("TRANSCRIPT_MAX_CHARS", default=32000)
# A conversation with no event for this many seconds is marked ended (0: never automatically).
CONVERSATION_IDLE_TIMEOUT = env.int("CONVERSATION_IDLE_TIMEOUT", default=30 * 60)
if TRANSCRIPT_MAX_FRAME_BYTES < 1024 or TRANSCRIPT_MAX_CHARS < 1 or CONVERSATION_IDLE_TIMEOUT < 0:
    raise ImproperlyConfigured(
        "TRANSCRIPT_MAX_FRAME_BYTES must be at least 1024, TRANSCRIPT_MAX_CHARS at least 1 and "
        "CONVERSATION_IDLE_TIMEOUT at least 0."
    )
# What is stored, bounded (bytes of frames as received). Past a bound a frame is refused with
# `quota_exceeded`; what is stored already is not touched.
TRANSCRIPT_MAX_BYTES_PER_CONVERSATION = env.int("TRANSCRIPT_MAX_BYTES_PER_CONVERSATION", default=20 * 1024 * 1024)
TRANSCRIPT_MAX_BYTES_PER_USER_PER_DAY = env.int("TRANSCRIPT_MAX_BYTES_PER_USER_PER_DAY", default=100 * 1024 * 1024)
# An event's bytes besides its transcript/text fields (real events have about 1 KB).
TRANSCRIPT_MAX_EVENT_NON_TEXT_BYTES = env.int("TRANSCRIPT_MAX_EVENT_NON_TEXT_BYTES", default=16 * 1024)
# Frames are accepted while a conversation is active and this many seconds after it ended
# (late transcripts); later ones are refused with `conversation_closed`.
CONVERSATION_LATE_EVENTS_SECONDS = env.int("CONVERSATION_LATE_EVENTS_SECONDS", default=120)
if min(TRANSCRIPT_MAX_BYTES_PER_CONVERSATION, TRANSCRIPT_MAX_BYTES_PER_USER_PER_DAY) < TRANSCRIPT_MAX_FRAME_BYTES:
    raise ImproperlyConfigured(
        "TRANSCRIPT_MAX_BYTES_PER_CONVERSATION and TRANSCRIPT_MAX_BYTES_PER_USER_PER_DAY must be at least "
        "TRANSCRIPT_MAX_FRAME_BYTES."
    )
if TRANSCRIPT_MAX_EVENT_NON_TEXT_BYTES < 1024 or CONVERSATION_LATE_EVENTS_SECONDS < 0:
    raise ImproperlyConfigured(
        "TRANSCRIPT_MAX_EVENT_NON_TEXT_BYTES must be at least 1024 and CONVERSATION_LATE_EVENTS_SECONDS "
        "at least 0."
    )
# Open sockets (transcript and live together) per user and per conversation, across all server
# processes; one more is closed with 4429.
MAX_SOCKETS_PER_USER = env.int("MAX_SOCKETS_PER_USER", default=20)
MAX_SOCKETS_PER_CONVERSATION = env.int("MAX_SOCKETS_PER_CONVERSATION", default=10)
# Frames (events, end; not pings) a user may send per second over all their sockets; past it a
# frame is answered `rate_limited` and not stored (the page resends it). 0 = no limit.
TRANSCRIPT_FRAMES_PER_SECOND_PER_USER = env.int("TRANSCRIPT_FRAMES_PER_SECOND_PER_USER", default=50)
# Seconds after which the slot of a socket whose server process died (no clean close) is free.
SOCKET_SLOT_TTL = env.int("SOCKET_SLOT_TTL", default=60)
if MAX_SOCKETS_PER_USER < 1 or MAX_SOCKETS_PER_CONVERSATION < 1:
    raise ImproperlyConfigured("MAX_SOCKETS_PER_USER and MAX_SOCKETS_PER_CONVERSATION must be at least 1.")
if TRANSCRIPT_FRAMES_PER_SECOND_PER_USER < 0:
    raise ImproperlyConfigured("TRANSCRIPT_FRAMES_PER_SECOND_PER_USER must be at least 0 (0 = no limit).")
if SOCKET_SLOT_TTL < 3:
    raise ImproperlyConfigured("SOCKET_SLOT_TTL must be at least 3 seconds.")

# --- Recordings ---------------------------------------------------------------------------
# The audio of a conversation, recorded in the browser and uploaded in chunks
# (conversations/recordings/). Stored through STORAGES["recordings"]: files under
# RECORDINGS_ROOT (private: nothing serves that directory; only the owner's and staff's
# playback view reads it), or an S3-compatible bucket (RECORDINGS_STORAGE=s3, docs/deploy.md).
RECORDINGS_STORAGE = env.str("RECORDINGS_STORAGE", default="filesystem").strip().lower()
RECORDINGS_ROOT = env.path("RECORDINGS_ROOT", default=BASE_DIR / "var" / "recordings")
# Largest chunk accepted (bytes; a 5 s chunk of Opus at 32 kbit/s is about 20 KB) and the most
# audio one conversation may hold, all its recordings together. Checked at start (checks.py).
RECORDING_MAX_CHUNK_BYTES = env.int("RECORDING_MAX_CHUNK_BYTES", default=1024 * 1024)
RECORDING_MAX_BYTES_PER_CONVERSATION = env.int("RECORDING_MAX_BYTES_PER_CONVERSATION", default=100 * 1024 * 1024)
# …and one user, all their conversations together (about 70 hours at 32 kbit/s).
RECORDING_MAX_BYTES_PER_USER = env.int("RECORDING_MAX_BYTES_PER_USER", default=1024 * 1024 * 1024)
if RECORDINGS_STORAGE == "s3":
    RECORDINGS_STORAGE_BACKEND = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env.str("RECORDINGS_S3_BUCKET", default=""),
            "endpoint_url": env.str("RECORDINGS_S3_ENDPOINT_URL", default="") or None,
            "region_name": env.str("RECORDINGS_S3_REGION", default="") or None,
            "location": env.str("RECORDINGS_S3_PREFIX", default="recordings"),
            # Private objects, never overwritten, read only through the playback view.
            "default_acl": "private",
            "file_overwrite": False,
            "querystring_auth": True,
        },
    }
else:
    RECORDINGS_STORAGE_BACKEND = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(RECORDINGS_ROOT), "directory_permissions_mode": 0o700,
                    "file_permissions_mode": 0o600},
    }

# --- Recordings: consent and the page's chunks ----------------------------------------------
# Whether the voice page records a session's audio (both sides, mixed in the browser, uploaded
# in chunks): off | opt-in (each user ticks "Record audio", remembered) | on (always; the page
# says so before Start). Checked by a system check (conversations/checks.py).
RECORDINGS = env.str("RECORDINGS", default="opt-in").strip().lower()
# Milliseconds of audio per uploaded chunk: a crash or closed tab loses at most the chunk in progress.
RECORDING_CHUNK_MS = env.int("RECORDING_CHUNK_MS", default=5000)

# --- Internationalization -------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

# --- Static files ---------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "recordings": RECORDINGS_STORAGE_BACKEND,
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "voiceproject.storage.StaticFilesStorage"  # hashed names, ES module imports too
        )
    },
}
# In development WhiteNoise serves straight from the app folders, no collectstatic needed.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

# --- Security -------------------------------------------------------------------------------
_openai = urlsplit(OPENAI_BASE_URL)
OPENAI_ORIGIN = f"{_openai.scheme}://{_openai.netloc}"
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        # 'self' covers ws:/wss: to our own origin in current browsers; the OpenAI origin is
        # where the browser posts its WebRTC offer.
        "connect-src": [SELF, OPENAI_ORIGIN],
        "media-src": [SELF, "blob:", "mediastream:"],
        "img-src": [SELF, "data:"],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}
# API paths answer a CSRF failure in JSON; pages keep the templates/403_csrf.html page.
CSRF_FAILURE_VIEW = "voiceproject.api.csrf_failure"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
# No script reads the CSRF cookie: pages that post from JavaScript carry the token in the page
# (the voice page's data-csrf attribute), so the cookie can be kept from scripts altogether.
CSRF_COOKIE_HTTPONLY = True
# Browser features pages may use (django-permissions-policy): the microphone for this
# site itself — never for an embedded frame — and none of the rest.
PERMISSIONS_POLICY = {
    "microphone": ["self"],
    **{
        feature: []
        for feature in (
            "accelerometer", "bluetooth", "camera", "display-capture", "geolocation", "gyroscope", "hid",
            "magnetometer", "midi", "payment", "serial", "usb", "xr-spatial-tracking",
        )
    },
}
if not DEBUG:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    # Load balancers probe over plain HTTP inside the private network.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
    CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
# Behind a TLS-terminating proxy that sets X-Forwarded-Proto.
if env.bool("SECURE_PROXY_SSL_HEADER", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- Logging --------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "{asctime} {levelname} {name}: {message}", "style": "{"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # httpx logs every request URL at INFO; keep it quiet (never log headers either way).
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}

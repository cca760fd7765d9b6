"""Settings for the test suite: the real settings, with a test secret and fast hashing."""

import os
import tempfile

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-production-use-0123456789")
os.environ.setdefault("DEBUG", "false")
# Tests must never reach OpenAI: without an explicit URL they talk to an unroutable address.
os.environ.setdefault("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
# Recorded audio of the test run goes to a directory of its own, never the project's var/ (set in
# the environment, so that the live servers the tests start share it).
os.environ.setdefault("RECORDINGS_ROOT", tempfile.mkdtemp(prefix="voiceproject-test-recordings-"))

from voiceproject.settings import *  # noqa: E402,F403
from voiceproject.settings import DATABASES  # noqa: E402

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
SECURE_SSL_REDIRECT = False
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
SECURE_HSTS_SECONDS = 0
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    # Tests that look at stored audio point this at a folder of their own (the `recordings_dir` fixture).
    "recordings": RECORDINGS_STORAGE_BACKEND,  # noqa: F405
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not :memory:, so that a live server in another process sees the same data.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / "test-db.sqlite3")}  # noqa: F405

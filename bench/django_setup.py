"""Django for a benchmark that runs the app in its own process: settings from the environment
(production's voiceproject.settings, not the tests'), a throw-away database, migrated."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def setup_django(database_url: str, *, keep_redis: bool = False, **env: str) -> None:
    """Set Django up on `database_url` (migrated) with `env` on top of the bench defaults. Without
    `keep_redis` the defaults' in-memory cache and channel layer are used, whatever REDIS_URL says."""
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "voiceproject.settings",
            "DATABASE_URL": database_url,
            "SECRET_KEY": "bench-only-secret-key-0123456789-0123456789-0123456789",
            "DEBUG": "false",
            **env,
        }
    )
    if not keep_redis:
        os.environ.pop("REDIS_URL", None)
    sys.path.insert(0, str(ROOT))  # the scripts live in bench/, the project one level up
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)

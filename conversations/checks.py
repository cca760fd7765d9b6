"""Start-up checks of the Realtime and recording settings that settings.py cannot make without the app's lists."""

import importlib.util
from pathlib import Path

from django.conf import settings
from django.core.checks import Error, register

from accounts import consent
from conversations.realtime import upstream

# OpenAI ends a Realtime session after 60 minutes: a longer cap could never be reached.
MAX_SESSION_SECONDS = 3600


@register()
def realtime_settings(app_configs, **kwargs):
    errors = []
    if settings.REALTIME_VOICE not in upstream.VOICES:
        errors.append(
            Error(
                f"REALTIME_VOICE={settings.REALTIME_VOICE!r} is not a Realtime voice.",
                hint=f"Use one of: {', '.join(upstream.VOICES)}.",
                id="conversations.E001",
            )
        )
    cap = settings.REALTIME_MAX_SESSION_SECONDS
    if isinstance(cap, bool) or not isinstance(cap, int) or not 1 <= cap <= MAX_SESSION_SECONDS:
        errors.append(
            Error(
                f"REALTIME_MAX_SESSION_SECONDS={cap!r} is not a number of seconds between 1 and {MAX_SESSION_SECONDS}.",
                hint="Set the longest a voice session may run, in whole seconds (default 1800: 30 minutes; "
                f"OpenAI's own limit is {MAX_SESSION_SECONDS}).",
                id="conversations.E002",
            )
        )
    if settings.RECORDINGS not in consent.MODES:
        errors.append(
            Error(
                f"RECORDINGS={settings.RECORDINGS!r} is not a recording mode.",
                hint="Use off, opt-in (each user chooses on the voice page) or on (every session is recorded).",
                id="conversations.E030",
            )
        )
    if not 1000 <= settings.RECORDING_CHUNK_MS <= 60000:
        errors.append(
            Error(
                f"RECORDING_CHUNK_MS={settings.RECORDING_CHUNK_MS} is out of range.",
                hint="Use between 1000 and 60000 milliseconds (a crash loses at most one chunk).",
                id="conversations.E031",
            )
        )
    return errors


# A 5 s chunk of Opus at 32 kbit/s is about 20 KB; below this bound no recorder's chunk fits.
MIN_RECORDING_CHUNK_BYTES = 64 * 1024


def _inside(path, folder) -> bool:
    try:
        Path(path).resolve().relative_to(Path(folder).resolve())
    except ValueError:
        return False
    return True


@register()
def recording_settings(app_configs, **kwargs):
    """The recording bounds and where the audio goes: bad values stop start-up with a clear message."""
    errors = []
    chunk, total = settings.RECORDING_MAX_CHUNK_BYTES, settings.RECORDING_MAX_BYTES_PER_CONVERSATION
    if chunk < MIN_RECORDING_CHUNK_BYTES:
        errors.append(
            Error(
                f"RECORDING_MAX_CHUNK_BYTES={chunk} is too small for a recorder's chunk.",
                hint=f"Use at least {MIN_RECORDING_CHUNK_BYTES} (the default is 1048576, 1 MiB).",
                id="conversations.E020",
            )
        )
    if total < chunk:
        errors.append(
            Error(
                f"RECORDING_MAX_BYTES_PER_CONVERSATION={total} is smaller than one chunk "
                f"(RECORDING_MAX_CHUNK_BYTES={chunk}).",
                hint="Use at least RECORDING_MAX_CHUNK_BYTES (the default is 104857600, 100 MiB).",
                id="conversations.E021",
            )
        )
    if settings.RECORDING_MAX_BYTES_PER_USER < total:
        errors.append(
            Error(
                f"RECORDING_MAX_BYTES_PER_USER={settings.RECORDING_MAX_BYTES_PER_USER} is smaller than "
                f"RECORDING_MAX_BYTES_PER_CONVERSATION={total}.",
                hint="Use at least RECORDING_MAX_BYTES_PER_CONVERSATION (the default is 1073741824, 1 GiB).",
                id="conversations.E026",
            )
        )
    if settings.RECORDINGS_STORAGE not in ("filesystem", "s3"):
        errors.append(
            Error(
                f"RECORDINGS_STORAGE={settings.RECORDINGS_STORAGE!r} is not a recordings storage.",
                hint="Use filesystem (the default: files under RECORDINGS_ROOT) or s3.",
                id="conversations.E022",
            )
        )
    elif settings.RECORDINGS_STORAGE == "s3":
        if importlib.util.find_spec("storages") is None:
            errors.append(
                Error(
                    "RECORDINGS_STORAGE=s3 needs django-storages with boto3, which is not installed.",
                    hint='pip install "django-storages[s3]" (see docs/deploy.md).',
                    id="conversations.E023",
                )
            )
        if not settings.STORAGES["recordings"].get("OPTIONS", {}).get("bucket_name"):
            errors.append(
                Error(
                    "RECORDINGS_STORAGE=s3 needs RECORDINGS_S3_BUCKET.",
                    id="conversations.E024",
                )
            )
    else:
        # Never where a public URL may serve it: the playback view checks who asks, a web server does not.
        root = settings.RECORDINGS_ROOT
        public = [settings.STATIC_ROOT, *settings.STATICFILES_DIRS]
        if settings.MEDIA_ROOT:
            public.append(settings.MEDIA_ROOT)
        for folder in public:
            if folder and (_inside(root, folder) or _inside(folder, root)):
                errors.append(
                    Error(
                        f"RECORDINGS_ROOT={root} overlaps {folder}, which may be served publicly.",
                        hint="Keep recordings in a private directory of their own (default var/recordings).",
                        id="conversations.E025",
                    )
                )
    return errors


@register()
def budget_settings(app_configs, **kwargs):
    """USER_DAILY_BUDGET_USD and BUDGET_SESSION_RESERVE_USD: amounts of US dollars, not negative."""
    from conversations import budget  # its models need the app registry, checks run after it

    errors = []
    for name, check_id, hint in (
        ("USER_DAILY_BUDGET_USD", "conversations.E004", "what one user may spend over 24 hours; 0: no budget"),
        ("BUDGET_SESSION_RESERVE_USD", "conversations.E005", "what a starting session holds of the budget"),
    ):
        value = getattr(settings, name)
        try:
            budget.parse_usd(value)
        except ValueError as exc:
            errors.append(
                Error(
                    f"{name}={value!r} {exc}.",
                    hint=f"Set it to an amount of US dollars, 0 or more, like 5 or 0.50 ({hint}).",
                    id=check_id,
                )
            )
    return errors

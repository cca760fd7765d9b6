"""Start-up checks of the Realtime and recording settings that settings.py cannot make without the app's lists."""

from django.conf import settings
from django.core.checks import Error, register

from accounts import consent
from conversations.realtime import upstream


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
    if settings.RECORDINGS not in consent.MODES:
        errors.append(
            Error(
                f"RECORDINGS={settings.RECORDINGS!r} is not a recording mode.",
                hint="Use off, opt-in (each user chooses on the voice page) or on (every session is recorded).",
                id="conversations.E020",
            )
        )
    if not 1000 <= settings.RECORDING_CHUNK_MS <= 60000:
        errors.append(
            Error(
                f"RECORDING_CHUNK_MS={settings.RECORDING_CHUNK_MS} is out of range.",
                hint="Use between 1000 and 60000 milliseconds (a crash loses at most one chunk).",
                id="conversations.E021",
            )
        )
    return errors

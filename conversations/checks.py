"""Start-up checks of the Realtime settings that settings.py cannot make without the app's lists."""

from django.conf import settings
from django.core.checks import Error, register

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
    return errors

"""Start-up checks of the Realtime settings that settings.py cannot make without the app's lists."""

from django.conf import settings
from django.core.checks import Error, register

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
    return errors

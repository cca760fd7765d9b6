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



@register()
def budget_settings(app_configs, **kwargs):
    """USER_DAILY_BUDGET_USD and BUDGET_SESSION_RESERVE_USD: amounts of US dollars, not negative."""
    from conversations import budget  # its models need the app registry, checks run after it

    errors = []
    for name, check_id, hint in (
        ("USER_DAILY_BUDGET_USD", "conversations.E002", "what one user may spend over 24 hours; 0: no budget"),
        ("BUDGET_SESSION_RESERVE_USD", "conversations.E003", "what a starting session holds of the budget"),
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

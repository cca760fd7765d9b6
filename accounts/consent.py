"""
Whether a voice session is recorded (RECORDINGS, docs/configuration.md): the site's mode and,
in opt-in mode, the user's own "Record audio" preference. One place for the page, the
preferences page and the API that saves the switch.
"""

from django.conf import settings

OFF, OPT_IN, ON = "off", "opt-in", "on"
MODES = (OFF, OPT_IN, ON)


def mode() -> str:
    return settings.RECORDINGS


def is_optional() -> bool:
    """Whether each user chooses (opt-in): only then does the "Record audio" switch exist."""
    return mode() == OPT_IN


def records(chosen) -> bool:
    """Whether a new session of the user with preferences `chosen` is recorded."""
    current = mode()
    return current == ON or (current == OPT_IN and bool(chosen.record_audio))

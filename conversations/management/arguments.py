"""
Checking the options of the conversation commands, with messages for the person who typed them.

Everything is checked in `handle()`, not by argparse `type=`/`choices=`: `call_command()` hands
keyword options straight to `handle()` without running argparse's conversions.
"""

import datetime
import uuid

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime


def moment(value, option: str) -> datetime.datetime | None:
    """
    An aware datetime from an ISO date or datetime. A date means the start of that day; a time
    without an offset is in the server's time zone (settings.TIME_ZONE).
    """
    if value is None or isinstance(value, datetime.datetime):
        parsed = value
    elif isinstance(value, datetime.date):
        parsed = datetime.datetime.combine(value, datetime.time.min)
    else:
        text = str(value).strip()
        try:
            day = parse_date(text)
            parsed = datetime.datetime.combine(day, datetime.time.min) if day else parse_datetime(text)
        except ValueError:  # well formed, impossible: 2025-02-30
            parsed = None
        if parsed is None:
            raise CommandError(
                f"{option}: {value!r} is not a date or time; use ISO 8601, e.g. 2025-01-31 "
                "or 2025-01-31T14:30 or 2025-01-31T14:30:00+01:00."
            )
    if parsed is not None and timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed)
    return parsed


def time_range(since, until) -> tuple[datetime.datetime | None, datetime.datetime | None]:
    since, until = moment(since, "--since"), moment(until, "--until")
    if since and until and since >= until:
        raise CommandError(f"--since ({since.isoformat()}) must be before --until ({until.isoformat()}).")
    return since, until


def uuids(values, option: str) -> list[uuid.UUID] | None:
    if not values:
        return None
    parsed, bad = [], []
    for value in values:
        try:
            parsed.append(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))
        except ValueError:
            bad.append(str(value))
    if bad:
        raise CommandError(f"{option}: not a conversation id (UUID): {', '.join(map(repr, bad))}.")
    return parsed


def users(names) -> list | None:
    """The users with these usernames; every name must exist."""
    if not names:
        return None
    names = list(dict.fromkeys(names))
    User = get_user_model()
    found = list(User.objects.filter(**{f"{User.USERNAME_FIELD}__in": names}))
    missing = set(names) - {user.get_username() for user in found}
    if missing:
        raise CommandError(f"Unknown user(s): {', '.join(sorted(missing))}.")
    return found


def choices(values, allowed, option: str) -> list[str] | None:
    if not values:
        return None
    if isinstance(values, str):
        values = [values]
    bad = [value for value in values if value not in allowed]
    if bad:
        raise CommandError(
            f"{option}: unknown value {', '.join(map(repr, bad))}; choose from {', '.join(allowed)}."
        )
    return list(values)


def positive_int(value, option: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1 or isinstance(value, float | bool):
        raise CommandError(f"{option}: expected a whole number of at least 1, got {value!r}.")
    return number

"""
What a user spent over the last 24 hours, from the usage the server trusts, at list prices.

MINIMAL STAND-IN for the usage ledger (issue 14, H1's `spend.py`): same signatures, but it counts
the responses' usage (ResponseUsage) only, not input transcription. A response's row is the
witness's when there was one (it replaces the browser's), else the browser's, marked unverified.
Priced with history/pricing.py by the conversation's model; a model without a price is charged at
the dearest known one, so a budget is never under-counted.
"""

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.utils import timezone

from conversations.history import pricing
from conversations.models import ResponseUsage, Source, TokenUsage

WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class Charge:
    """One priced piece of usage."""

    at: datetime  # when it was recorded (server clock)
    usd: Decimal
    verified: bool  # True: the witness's usage; False: the browser's (no witness)


@dataclass(frozen=True)
class Spent:
    total: Decimal  # over the last WINDOW
    unverified: Decimal  # the part only the browser reported
    charges: list[Charge] = field(default_factory=list)  # oldest first


def _dearest_model() -> str:
    return max(pricing.PRICES, key=lambda name: pricing.PRICES[name].audio_out)


def _charge(row: dict) -> Charge:
    model = row["conversation__model"]
    usd = pricing.estimate_cost(row, model if pricing.price_for(model) else _dearest_model())
    return Charge(at=row["created_at"], usd=usd, verified=row["source"] == Source.SERVER)


def _rows(since: datetime, **user_filter):
    return (
        ResponseUsage.objects.filter(created_at__gt=since, **user_filter)
        .order_by("created_at", "pk")
        .values(
            "conversation__user_id", "conversation__model", "created_at", "source", *TokenUsage.USAGE_FIELDS
        )
    )


def charges(user_id: int, *, since: datetime) -> list[Charge]:
    """`user_id`'s charges recorded after `since`, oldest first (one query)."""
    return [_charge(row) for row in _rows(since, conversation__user_id=user_id)]


def _spent(found: list[Charge]) -> Spent:
    return Spent(
        total=sum((c.usd for c in found), Decimal(0)),
        unverified=sum((c.usd for c in found if not c.verified), Decimal(0)),
        charges=found,
    )


def spent(user_id: int, *, now: datetime | None = None) -> Spent:
    """What `user_id` spent over the WINDOW up to `now`."""
    return _spent(charges(user_id, since=(now or timezone.now()) - WINDOW))


def spent_by_user(user_ids: Iterable[int], *, now: datetime | None = None) -> dict[int, Spent]:
    """spent() of several users in one query (the staff usage page); every id gets an entry."""
    ids = list(user_ids)
    found: dict[int, list[Charge]] = defaultdict(list)
    if ids:
        for row in _rows((now or timezone.now()) - WINDOW, conversation__user_id__in=ids):
            found[row["conversation__user_id"]].append(_charge(row))
    return {user_id: _spent(found.get(user_id, [])) for user_id in ids}

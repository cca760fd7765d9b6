"""
What a user has spent, in USD at list prices, from the usage the server trusts: the ledger the
daily budget (`budget.py`) and the witness's budget hang-up are built on.

A charge is one priced piece of usage with the server's time it was recorded: a response's
(`ResponseUsage`, at the conversation's model's prices) or a user item's input transcription
(`TranscriptionUsage`, at REALTIME_TRANSCRIPTION_MODEL's prices: the model every session is
started with). The journal keeps one row per response and per item, and the witness's row
replaces the browser's (never the other way round), so each row here is the trusted usage of
its response or item: `verified` when the witness saw it, else the browser's report of a call
the witness did not see, counted all the same (it is what the user spent, as far as anyone
knows) but marked, so that staff and the page can tell.

Models not in the price table are priced at the dearest known rates, never at 0: a budget is
never under-counted. Every function costs two queries (one per kind of usage), whatever the
number of users, conversations or charges; and they look only at the conversations active in
the window.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from conversations.history import pricing
from conversations.models import Conversation, ResponseUsage, Source, TokenUsage, TranscriptionUsage

WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class Charge:
    """One priced piece of usage."""

    at: datetime  # when it was recorded (server clock)
    usd: Decimal
    verified: bool  # True: the witness's (server) usage; False: the browser's (no witness)


@dataclass(frozen=True)
class Spent:
    """A user's spend over the last WINDOW."""

    total: Decimal = Decimal(0)
    unverified: Decimal = Decimal(0)  # the part only the browser reported
    charges: list[Charge] = field(default_factory=list)  # oldest first


def _charges(user_ids: list[int], since: datetime, until: datetime | None) -> dict[int, list[Charge]]:
    """{user id: their charges recorded at `since` or later (up to `until`), oldest first}."""
    found: dict[int, list[Charge]] = {uid: [] for uid in user_ids}
    if not user_ids:
        return found
    # Usage is written with its conversation's activity (the journal stamps last_activity_at in
    # the same transaction; a rebuild sets it to the last event's time), so only conversations
    # active since then can hold charges: the (user, last_activity_at) index finds them, and a
    # user's older conversations, however many, cost nothing. (No activity recorded: looked at
    # too. The user is named in both branches so that each is one index range.)
    active = Q(user_id__in=user_ids, last_activity_at__gte=since) | Q(
        user_id__in=user_ids, last_activity_at=None
    )
    window = Q(conversation__in=Conversation.objects.filter(active).values("pk"), created_at__gte=since)
    if until is not None:
        window &= Q(created_at__lte=until)
    responses = (
        ResponseUsage.objects.filter(window)
        .order_by()
        .values(
            "conversation__user_id", "conversation__model", "created_at", "source", *TokenUsage.USAGE_FIELDS
        )
    )
    for row in responses:
        usd = pricing.estimate_cost(row, row["conversation__model"], unknown_at_dearest=True)
        found[row["conversation__user_id"]].append(
            Charge(row["created_at"], usd, row["source"] == Source.SERVER)
        )
    transcriptions = (
        TranscriptionUsage.objects.filter(window)
        .order_by()
        .values("conversation__user_id", "created_at", "source", *TranscriptionUsage.USAGE_FIELDS)
    )
    model = settings.REALTIME_TRANSCRIPTION_MODEL
    for row in transcriptions:
        usd = pricing.transcription_cost(row, model)
        found[row["conversation__user_id"]].append(
            Charge(row["created_at"], usd, row["source"] == Source.SERVER)
        )
    for user_charges in found.values():
        user_charges.sort(key=lambda charge: charge.at)
    return found


def charges(user_id: int, *, since: datetime) -> list[Charge]:
    """A user's charges recorded at `since` or later, oldest first."""
    return _charges([user_id], since, None)[user_id]


def _spent(user_charges: list[Charge]) -> Spent:
    return Spent(
        total=sum((c.usd for c in user_charges), Decimal(0)),
        unverified=sum((c.usd for c in user_charges if not c.verified), Decimal(0)),
        charges=user_charges,
    )


def spent(user_id: int, *, now: datetime | None = None) -> Spent:
    """What a user spent over the WINDOW up to `now` (a charge exactly WINDOW old still counts)."""
    return spent_by_user([user_id], now=now)[user_id]


def spent_by_user(user_ids: Iterable[int], *, now: datetime | None = None) -> dict[int, Spent]:
    """`spent()` of each of `user_ids` (those without charges spent 0), in the same two queries."""
    now = now or timezone.now()
    return {uid: _spent(found) for uid, found in _charges(sorted(set(user_ids)), now - WINDOW, now).items()}

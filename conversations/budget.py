"""
A MINIMAL stand-in for the daily budget (the `budget` branch owns the real module, with holds,
overrides and the atomic check in issuing). Only what the hang-up needs, with the shared
interface's names: `is_spent(user_id)`, `release(conversation_id)`, `standing()`, `as_json()`.

Spent = the estimated cost (history/pricing.py, each conversation's model) of the user's
ResponseUsage rows of the last 24 hours; USER_DAILY_BUDGET_USD (default 5, 0 = no budget).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.utils import timezone

from conversations.history import pricing
from conversations.models import ResponseUsage

WINDOW = timedelta(hours=24)
FIELDS = ("input_tokens", "output_tokens", "input_text_tokens", "input_audio_tokens", "cached_tokens",
          "output_text_tokens", "output_audio_tokens")  # fmt: skip


def limit_for(user_id) -> Decimal | None:
    limit = Decimal(str(getattr(settings, "USER_DAILY_BUDGET_USD", 5)))
    return limit if limit > 0 else None


@dataclass(frozen=True)
class Standing:
    limit: Decimal | None
    spent: Decimal
    unverified: Decimal = Decimal(0)
    held: Decimal = Decimal(0)
    frees_at: datetime | None = None

    @property
    def exhausted(self) -> bool:
        return self.limit is not None and self.spent + self.held >= self.limit


def spent(user_id, *, now=None) -> Decimal:
    since = (now or timezone.now()) - WINDOW
    rows = ResponseUsage.objects.filter(conversation__user_id=user_id, created_at__gte=since).values(
        "conversation__model", *FIELDS
    )
    return sum(
        (pricing.estimate_cost(row, row["conversation__model"]) or Decimal(0) for row in rows), Decimal(0)
    )


def standing(user_id, *, now=None) -> Standing:
    return Standing(limit=limit_for(user_id), spent=spent(user_id, now=now))


def is_spent(user_id) -> bool:
    limit = limit_for(user_id)
    return limit is not None and spent(user_id) >= limit


def release(conversation_id) -> None:
    """The session's hold ends (no holds in this minimal version)."""


def as_json(standing: Standing) -> dict:
    return {
        "limit_usd": None if standing.limit is None else f"{standing.limit:.2f}",
        "spent_usd": f"{standing.spent:.2f}",
        "unverified_usd": f"{standing.unverified:.2f}",
        "frees_at": int(standing.frees_at.timestamp()) if standing.frees_at else None,
    }

"""
The daily spending budget of each user: what they may spend on voice sessions over the last 24
hours (spend.WINDOW), and the check that refuses a new session once it is used.

- The limit is USER_DAILY_BUDGET_USD (0 = no budget), or staff's BudgetOverride for the user (an
  amount; 0 = no budget for that user; empty = the site's).
- What counts is spend.spent(): the usage the server trusts, priced at list prices.
- A session about to start holds BUDGET_SESSION_RESERVE_USD (a BudgetHold row) until its call or
  conversation ends (release()), or it lapses after REALTIME_MAX_SESSION_SECONDS +
  REALTIME_KEY_TTL if nothing says so. A session's spend only reaches the ledger as it happens, so
  without holds ten tabs could start ten sessions on the last dollar of a budget. A conversation
  holds once: continuing it takes its hold over.

The check and the hold are one transaction (hold()): it locks the user's row (SELECT … FOR UPDATE
on PostgreSQL; SQLite's IMMEDIATE transactions admit one writer at a time), then reads spend and
live holds, then inserts the hold. Two processes racing for the last session of a budget are
serialised by the lock, and the second sees the first's hold. The user's row is locked rather
than a budget row because it always exists: there is nothing to create first, and no race in
creating it.

A session is admitted while spent + held + reserve <= limit (a reserve above the limit is cut to
the limit, so a small budget still allows a session when nothing is spent). The witness hangs a
live call up once spend alone reaches the limit (is_spent()).
"""

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal, InvalidOperation

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from conversations import spend
from conversations.models import BudgetHold, BudgetOverride, Conversation
from conversations.realtime.errors import IssuingError

ZERO = Decimal(0)
CENT = Decimal("0.01")


# --- settings -------------------------------------------------------------------------------------


def parse_usd(value) -> Decimal:
    """A setting's amount of US dollars; ValueError (saying what is wrong) unless a finite number >= 0."""
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        amount = None
    if amount is None or not amount.is_finite():
        raise ValueError("is not a number")
    if amount < 0:
        raise ValueError("is negative")
    return amount


def site_limit() -> Decimal | None:
    """USER_DAILY_BUDGET_USD, None for 0 (no budget)."""
    return parse_usd(settings.USER_DAILY_BUDGET_USD) or None


def session_reserve() -> Decimal:
    return parse_usd(settings.BUDGET_SESSION_RESERVE_USD)


def hold_lifetime() -> timedelta:
    """How long a hold lasts when nothing releases it: the longest a session can run, plus its key's life."""
    return timedelta(seconds=int(settings.REALTIME_MAX_SESSION_SECONDS) + settings.REALTIME_KEY_TTL)


# --- where a user stands ------------------------------------------------------------------------------


def _limit(override: Decimal | None) -> Decimal | None:
    if override is None:  # no row, or "the site's"
        return site_limit()
    return override or None  # 0: no budget for this user


def limit_for(user_id: int) -> Decimal | None:
    """The user's daily budget in USD, None when they have none (one query)."""
    return _limit(BudgetOverride.objects.filter(user_id=user_id).values_list("daily_usd", flat=True).first())


@dataclass(frozen=True)
class Standing:
    limit: Decimal | None  # None: no budget
    spent: Decimal  # over the last 24 hours
    unverified: Decimal  # the part of `spent` only the browser reported
    held: Decimal  # by sessions that have not ended
    frees_at: datetime | None = None  # when a session fits again (None: it fits now, or no budget)
    reserve: Decimal = ZERO  # what a new session would hold

    @property
    def exhausted(self) -> bool:
        """No new session fits."""
        return self.limit is not None and not _fits(self.limit, self.reserve, self.spent, self.held)

    @property
    def spent_alone(self) -> bool:
        """The spend itself leaves no room for a session (not only the sessions running now)."""
        return self.limit is not None and not _fits(self.limit, self.reserve, self.spent, ZERO)


def _fits(limit: Decimal, reserve: Decimal, spent: Decimal, held: Decimal) -> bool:
    """A new session fits: the budget is not spent, and its reserve fits beside the running sessions'."""
    return spent < limit and spent + held + reserve <= limit


def _live_holds(user_id: int, now: datetime) -> list[tuple[Decimal, datetime]]:
    return list(
        BudgetHold.objects.filter(user_id=user_id, expires_at__gt=now)
        .order_by("expires_at")
        .values_list("usd", "expires_at")
    )


def _frees_at(limit, reserve, charges, holds, now) -> datetime | None:
    """The first moment at which spend leaving the window and holds lapsing make room for a session."""
    spent, held = sum((c.usd for c in charges), ZERO), sum((usd for usd, _ in holds), ZERO)
    if _fits(limit, reserve, spent, held):
        return None
    # (when, spend that leaves the window then, hold that lapses then)
    leaving = sorted(
        [(c.at + spend.WINDOW, c.usd, ZERO) for c in charges] + [(at, ZERO, usd) for usd, at in holds]
    )
    for at, spend_leaving, hold_lapsing in leaving:
        spent, held = spent - spend_leaving, held - hold_lapsing
        if _fits(limit, reserve, spent, held):
            return max(at, now)
    return None  # unreachable: with nothing left, a reserve cut to the limit fits


def _standing(user_id: int, limit: Decimal | None, now: datetime, holds=None) -> Standing:
    if holds is None:
        holds = [] if limit is None else _live_holds(user_id, now)
    return _make(limit, spend.spent(user_id, now=now), holds, now)


def _make(limit: Decimal | None, spent: spend.Spent, holds: list, now: datetime) -> Standing:
    if limit is None:
        return Standing(None, spent.total, spent.unverified, ZERO)
    reserve = min(session_reserve(), limit)
    return Standing(
        limit=limit,
        spent=spent.total,
        unverified=spent.unverified,
        held=sum((usd for usd, _ in holds), ZERO),
        frees_at=_frees_at(limit, reserve, spent.charges, holds, now),
        reserve=reserve,
    )


def standing(user_id: int, *, now: datetime | None = None) -> Standing:
    """Where `user_id` stands against their budget now."""
    return _standing(user_id, limit_for(user_id), now or timezone.now())


astanding = sync_to_async(standing)


def standings(user_ids: Iterable[int], *, now: datetime | None = None) -> dict[int, Standing]:
    """standing() of several users in a fixed number of queries (the staff usage page)."""
    now, ids = now or timezone.now(), list(user_ids)
    spent = spend.spent_by_user(ids, now=now)
    overrides = dict(BudgetOverride.objects.filter(user_id__in=ids).values_list("user_id", "daily_usd"))
    holds = defaultdict(list)
    live = BudgetHold.objects.filter(user_id__in=ids, expires_at__gt=now)
    for user_id, usd, expires_at in live.values_list("user_id", "usd", "expires_at"):
        holds[user_id].append((usd, expires_at))
    return {
        user_id: _make(_limit(overrides.get(user_id)), spent[user_id], holds[user_id], now) for user_id in ids
    }


def is_spent(user_id: int) -> bool:
    """Spend alone (holds not counted) has reached the budget: the witness hangs the call up."""
    limit = limit_for(user_id)
    return limit is not None and spend.spent(user_id).total >= limit


def as_json(standing: Standing) -> dict:
    """The page's and the API's view: amounts as decimal strings, frees_at in epoch seconds."""

    def usd(amount, rounding=ROUND_HALF_UP):
        return str(amount.quantize(CENT, rounding=rounding))

    return {
        "limit_usd": None if standing.limit is None else usd(standing.limit),
        # Rounded up: a meter never shows room that the check would not give.
        "spent_usd": usd(standing.spent, ROUND_CEILING),
        "unverified_usd": usd(standing.unverified, ROUND_CEILING),
        "held_usd": usd(standing.held, ROUND_CEILING),
        "frees_at": None if standing.frees_at is None else math.ceil(standing.frees_at.timestamp()),
    }


# --- the refusal -----------------------------------------------------------------------------------


def format_limit(limit: Decimal) -> str:
    return f"${limit.quantize(CENT, rounding=ROUND_HALF_UP):,}"


def frees_at_words(at: datetime) -> str:
    """"14:20 UTC": the minute it frees up, rounded up (so "at 14:20" is never too early)."""
    at = at.astimezone(UTC)
    if at.second or at.microsecond:
        at = at.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return at.strftime("%H:%M UTC")


def refusal_message(standing: Standing) -> str:
    limit, when = format_limit(standing.limit), frees_at_words(standing.frees_at)
    if standing.spent_alone:
        return f"You have used today's voice budget ({limit}). It frees up at {when}."
    return (
        f"Your voice sessions running now hold the rest of today's voice budget ({limit}). "
        f"End one, or wait until {when}."
    )


class BudgetExhausted(IssuingError):
    """The user's daily budget leaves no room for another session."""

    def __init__(self, standing: Standing, now: datetime):
        self.standing = standing
        # Seconds until a session fits again (the Retry-After header).
        self.retry_after = max(1, math.ceil((standing.frees_at - now).total_seconds()))
        super().__init__(refusal_message(standing))


# --- holds ----------------------------------------------------------------------------------------


def hold(user_id: int, conversation_uuid, *, now: datetime | None = None) -> int | None:
    """
    Check that one more session fits `user_id`'s budget and hold its reserve for the session of
    conversation `conversation_uuid` (new or continued), in one atomic step. Returns the hold's id
    (None: the user has no budget, nothing is held); raises BudgetExhausted.
    """
    limit = limit_for(user_id)
    if limit is None:
        return None
    with transaction.atomic():
        # Serialises this user's checks across processes (see the module's docstring).
        list(get_user_model().objects.select_for_update().filter(pk=user_id).values_list("pk"))
        now = now or timezone.now()
        fields = ("pk", "usd", "expires_at", "conversation_uuid")
        holds = list(BudgetHold.objects.filter(user_id=user_id).values_list(*fields))
        # Lapsed holds (nothing released them: a process died) count no more. A conversation runs
        # one session at a time, so continuing it (after a lost connection, say) takes over its
        # hold instead of adding a second one.
        gone = {pk for pk, _, expires_at, of in holds if expires_at <= now or of == conversation_uuid}
        live = [(usd, expires_at) for pk, usd, expires_at, _ in holds if pk not in gone]
        current = _standing(user_id, limit, now, live)
        if current.exhausted:
            raise BudgetExhausted(current, now)
        if gone:
            BudgetHold.objects.filter(pk__in=gone).delete()
        return BudgetHold.objects.create(
            user_id=user_id, conversation_uuid=conversation_uuid, usd=current.reserve,
            created_at=now, expires_at=now + hold_lifetime(),
        ).pk  # fmt: skip


def drop(hold_id: int | None) -> None:
    """The session never started (the upstream call failed): give its reserve back at once."""
    if hold_id is not None:
        BudgetHold.objects.filter(pk=hold_id).delete()


def release(conversation_id: int) -> None:
    """The conversation's session ended (its call was hung up, or the conversation ended)."""
    BudgetHold.objects.filter(
        conversation_uuid__in=Conversation.objects.filter(pk=conversation_id).values("uuid")
    ).delete()


def release_uuids(conversation_uuids) -> None:
    """release() by the conversations' public ids."""
    BudgetHold.objects.filter(conversation_uuid__in=list(conversation_uuids)).delete()


def release_ended(conversation_uuids) -> None:
    """release() for those of these conversations that ended (the idle sweep)."""
    ended = Conversation.objects.filter(uuid__in=list(conversation_uuids), status=Conversation.Status.ENDED)
    BudgetHold.objects.filter(conversation_uuid__in=ended.values("uuid")).delete()


def prune_lapsed(users=None, *, now: datetime | None = None) -> int:
    """Delete the holds that lapsed (they count for nothing; hold() also deletes a user's own when
    it next runs, so only users who stopped coming leave any): `users`' only, or everyone's."""
    lapsed = BudgetHold.objects.filter(expires_at__lte=now or timezone.now())
    if users is not None:
        lapsed = lapsed.filter(user__in=list(users))
    return lapsed.delete()[0]


ahold = sync_to_async(hold)
adrop = sync_to_async(drop)

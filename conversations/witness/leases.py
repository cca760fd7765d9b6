"""
Which server process holds which call's witness: a lease on the RealtimeCall row.

A process claims a call with ONE conditional UPDATE (holder and expiry set only where no valid
lease exists), so of two processes racing for a call exactly one gets rowcount 1, on SQLite (writes
are serialised) and on PostgreSQL (the second UPDATE waits for the first's row lock, then re-checks
its WHERE on the new row version and matches nothing). The holder's heartbeat pushes the expiry
forward; if the holder dies, the lease runs out and another process's scan claims the call.

Plain synchronous functions (the supervisor runs them with sync_to_async).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from conversations.models import Conversation, RealtimeCall

# OpenAI ends a session after 60 minutes; a call older than this is over whatever we last saw.
CALL_MAX_AGE = timedelta(minutes=61)
State = RealtimeCall.WitnessState


@dataclass(frozen=True)
class Claimed:
    pk: int
    call_id: str
    conversation_id: int


def _live(now: datetime) -> Q:
    """Calls that may still run: not seen to end, not failed, young enough, and of a conversation
    that still accepts events (active, or ended within CONVERSATION_LATE_EVENTS_SECONDS)."""
    late = now - timedelta(seconds=settings.CONVERSATION_LATE_EVENTS_SECONDS)
    return (
        Q(ended_at__isnull=True, created_at__gte=now - CALL_MAX_AGE)
        & ~Q(witness_state=State.FAILED)
        & (Q(conversation__status=Conversation.Status.ACTIVE) | Q(conversation__ended_at__gte=late))
    )


def _free(now: datetime) -> Q:
    return Q(witness_lease_until__isnull=True) | Q(witness_lease_until__lt=now)


def claim(holder: str, lease: float, *, limit: int, skip=()) -> list[Claimed]:
    """Claim up to `limit` live calls without a valid lease; the ones won."""
    return [call for call in candidates(limit=limit, skip=skip) if take(holder, call.pk, lease)]


def candidates(*, limit: int, skip=()) -> list[Claimed]:
    """Live calls without a valid lease, oldest first (what another process may claim meanwhile)."""
    now = timezone.now()
    rows = (
        RealtimeCall.objects.filter(_live(now) & _free(now))
        .exclude(pk__in=list(skip))
        .order_by("created_at")
        .values_list("pk", "call_id", "conversation_id")[:limit]
    )
    return [Claimed(*row) for row in rows]


def take(holder: str, pk: int, lease: float) -> bool:
    """The claim itself: one UPDATE whose WHERE repeats the check, so only one racer's can match."""
    now = timezone.now()
    return bool(
        RealtimeCall.objects.filter(Q(pk=pk) & _free(now), ended_at__isnull=True).update(
            witness_holder=holder, witness_lease_until=now + timedelta(seconds=lease)
        )
    )


def renew(holder: str, pks, lease: float) -> set[int]:
    """Extend this holder's leases on `pks`; the pks it still holds (a lease that ran out may have
    been claimed by another process meanwhile: its witness must stop)."""
    pks = list(pks)
    if not pks:
        return set()
    now = timezone.now()
    held = RealtimeCall.objects.filter(pk__in=pks, witness_holder=holder, ended_at__isnull=True)
    if held.update(witness_lease_until=now + timedelta(seconds=lease)) == len(pks):
        return set(pks)
    return set(held.values_list("pk", flat=True))


def closed(pks) -> set[int]:
    """Of these calls, the ones whose conversation no longer accepts events (or that are too old)."""
    pks = list(pks)
    if not pks:
        return set()
    now = timezone.now()
    return set(RealtimeCall.objects.filter(pk__in=pks).exclude(_live(now)).values_list("pk", flat=True))


def release(holder: str, pks) -> None:
    """Give the leases up (a process shutting down): another process may claim them at once."""
    RealtimeCall.objects.filter(pk__in=list(pks), witness_holder=holder).update(
        witness_holder="", witness_lease_until=None
    )


def mark(holder: str, pk: int, state: str, *, attempts: int | None = None) -> bool:
    """Record the witness's state while holding the lease; False if the lease is gone."""
    fields = {"witness_state": state}
    if attempts is not None:
        fields["witness_attempts"] = attempts
    return bool(RealtimeCall.objects.filter(pk=pk, witness_holder=holder).update(**fields))


def finish(holder: str, pk: int, state: str | None = None, *, attempts: int | None = None) -> None:
    """The witness is over: the call ended (ended_at set) or it failed. No one claims it again."""
    fields = {"witness_holder": "", "witness_lease_until": None}
    if attempts is not None:
        fields["witness_attempts"] = attempts
    if state is not None:
        fields["witness_state"] = state
    if state != State.FAILED:
        fields["ended_at"] = timezone.now()
    RealtimeCall.objects.filter(pk=pk, witness_holder=holder).update(**fields)


def count_reset(pk: int) -> None:
    RealtimeCall.objects.filter(pk=pk).update(session_resets=F("session_resets") + 1)


def plan(conversation_id: int) -> dict | None:
    """The session options the conversation was started with (model, voice, turn detection,
    language), as `upstream.session_config` takes them; None if it is gone."""
    return (
        Conversation.objects.filter(pk=conversation_id)
        .values("model", "voice", "turn_detection", "language")
        .first()
    )

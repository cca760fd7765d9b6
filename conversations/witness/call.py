"""
The witness of one call: attach to its sideband, journal what OpenAI sends there as the server's
events, keep the session's instructions and tools the server's, reattach after a drop.

It runs while its supervisor holds the call's lease (leases.py) and ends when the call ends: a
normal close of the sideband (OpenAI closes it when the call is over), an `error` with code
`session_expired`, a refused reattach after it had been attached (the call is gone), or the
supervisor's heartbeat finding the conversation closed (or the server hanging it up: after each
usage-bearing event it journals, it checks the user's daily budget, and hangs up once it is spent).
An attach refused from the start (404
`call_id_not_found`, 401, …) a few times in a row marks the witness `failed`: the conversation
goes on from the browser's stream, unwitnessed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from asgiref.sync import sync_to_async
from django.conf import settings

from conversations import budget
from conversations.models import Conversation, RealtimeCall
from conversations.realtime import upstream
from conversations.transcript.forwarded import forwarded_types
from conversations.transcript.frames import Frame, server_frame
from conversations.transcript.writer import get_writer
from conversations.witness import hangup, leases
from conversations.witness.seqs import Numbering
from conversations.witness.sideband import AttachRefused, Dropped, Sideband

if TYPE_CHECKING:
    from conversations.witness.supervisor import Supervisor

log = logging.getLogger(__name__)
State = RealtimeCall.WitnessState
# The events that carry usage (what the budget counts): after journaling one, the budget is checked.
USAGE_EVENTS = frozenset({"response.done", "conversation.item.input_audio_transcription.completed"})


def expected_session(plan: dict | None) -> dict:
    """What the server set and keeps: the instructions of the conversation's plan, and no tools."""
    try:
        instructions = upstream.session_config(**plan)["instructions"]
    except (TypeError, ValueError):  # no plan, or one the settings no longer allow
        instructions = settings.REALTIME_INSTRUCTIONS
    return {"instructions": instructions, "tools": []}


def differs(session: dict, expected: dict) -> bool:
    """Instructions or tools not the server's (fields absent from the event are not judged;
    turn detection, which the page changes on purpose, is not looked at)."""
    if "instructions" in session and session["instructions"] != expected["instructions"]:
        return True
    return "tools" in session and (session["tools"] or []) != expected["tools"]


class LeaseLost(Exception):
    """This process no longer holds the call's lease: its witness stops, quietly."""


class CallWitness:
    def __init__(self, supervisor: Supervisor, claimed: leases.Claimed):
        self.supervisor = supervisor
        self.call = claimed
        self.expected: dict = {}
        self.attached = False  # ever, by this witness
        self.journaled = 0
        # Seqs from blocks this witness reserved (seqs.py), never from a count in memory: another
        # process may be numbering the same conversation's server stream at the same time.
        self.numbering = Numbering(claimed.conversation_id)
        self._pending: list[tuple[dict, str]] = []  # (event, the text it came in)
        self._flusher: asyncio.Task | None = None
        self.user_id: int | None = None
        self.hung_up = False  # asked the supervisor to hang the call up (once)

    @property
    def holder(self) -> str:
        return self.supervisor.holder

    async def run(self) -> None:
        sup, call = self.supervisor, self.call
        self.expected = expected_session(await sync_to_async(leases.plan)(call.conversation_id))
        self.user_id = await sync_to_async(hangup.owner)(call.conversation_id)
        refused = 0
        drops = 0
        while True:
            try:
                sideband = await Sideband.open(call.call_id, key=sup.api_key, base_url=sup.base_url)
            except AttachRefused as error:
                if self.attached and error.status == 404:
                    log.info("Witness of %s: the call is gone", call.call_id)
                    return await self._finish(State.LOST)
                if error.status >= 500 or error.status == 429:  # OpenAI's trouble: keep trying
                    drops += 1
                else:
                    refused += 1
                    if refused >= sup.max_refusals:
                        log.warning(
                            "Witness of %s failed: attach refused %s times (%s %s)",
                            call.call_id,
                            refused,
                            error.status,
                            error.code,
                        )
                        return await self._finish(State.FAILED, attempts=refused)
                    await self._mark(State.NONE if not self.attached else State.LOST, attempts=refused)
                await asyncio.sleep(sup.backoff_delay(max(refused, drops)))
                continue
            except Dropped as error:
                drops += 1
                log.info("Witness of %s could not attach: %s", call.call_id, error)
                if self.attached:
                    await self._mark(State.LOST)
                await asyncio.sleep(sup.backoff_delay(drops))
                continue

            refused = drops = 0
            self.attached = True
            await self._mark(State.ATTACHED, attempts=0)
            try:
                async with sideband:
                    # An attached socket gets no session.created: assert the server's session (this also
                    # undoes what the page may have changed before we attached).
                    await self._assert_session(sideband)
                    async for event, text in sideband.events():
                        if await self._on_event(sideband, event, text):
                            await self._flush()
                            return await self._finish(None)
                await self._flush()
                log.info("Witness of %s: the sideband closed, the call is over", call.call_id)
                return await self._finish(None)
            except Dropped as error:
                await self._flush()
                drops += 1
                log.info("Witness of %s lost the sideband (%s); reconnecting", call.call_id, error)
                await self._mark(State.LOST)
                await asyncio.sleep(sup.backoff_delay(drops))

    async def _on_event(self, sideband: Sideband, event: dict, text: str) -> bool:
        """Handle one server event; True when it ends the call."""
        kind = event["type"]
        if kind in forwarded_types():
            self._journal(event, text)
        if kind == "session.updated" and isinstance(event.get("session"), dict):
            if differs(event["session"], self.expected):
                log.warning(
                    "Call %s: the session's instructions or tools were changed; setting them back",
                    self.call.call_id,
                )
                await self._assert_session(sideband)
                await sync_to_async(leases.count_reset)(self.call.pk)
        elif kind == "error" and (event.get("error") or {}).get("code") == "session_expired":
            return True
        return False

    async def _assert_session(self, sideband: Sideband) -> None:
        await sideband.send({"type": "session.update", "session": {"type": "realtime", **self.expected}})

    # --- the journal --------------------------------------------------------------------------

    def _journal(self, event: dict, text: str) -> None:
        self._pending.append((event, text))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        # One write for whatever arrived while the previous one was committing.
        while self._pending:
            events, self._pending = self._pending, []
            try:
                frames = await self._frames(events)
                if not frames:
                    continue
                result = await get_writer().write(self.call.conversation_id, frames)
            except Conversation.DoesNotExist:  # deleted: the heartbeat ends this witness
                log.info("Witness of %s: %s events not stored (conversation gone)", self.call.call_id,
                         len(events))
                continue
            except Exception:
                log.exception("Witness of %s: journaling %s events failed", self.call.call_id, len(events))
                continue
            self.journaled += result.stored
            if result.stored and any(event["type"] in USAGE_EVENTS for event, _ in events):
                await self._check_budget()
            refused = result.refused_of("server")
            if refused or not result.found:
                log.info(
                    "Witness of %s: %s events refused (%s)",
                    self.call.call_id,
                    len(refused),
                    {e.code for e in refused.values()} or "conversation gone",
                )

    async def _check_budget(self) -> None:
        """The user's budget is spent (this event's usage crossed it, or another call's did): hang up."""
        if self.hung_up or self.user_id is None:
            return
        try:
            spent = await sync_to_async(budget.is_spent)(self.user_id)
        except Exception:  # the call goes on; the next usage event checks again
            log.exception("Witness of %s: checking the budget failed", self.call.call_id)
            return
        if spent:
            self.hung_up = True
            log.info("Witness of %s: the user's daily budget is spent; hanging up", self.call.call_id)
            self.supervisor.hang_up(self.call.pk, hangup.BUDGET)

    async def _frames(self, events: list[tuple[dict, str]]) -> list[Frame]:
        """The events as the server's frames, numbered in the order OpenAI sent them."""
        seqs = await self.numbering.take(len(events))
        frames = (self._frame(seq, event, text) for seq, (event, text) in zip(seqs, events))
        return [frame for frame in frames if frame is not None]

    def _frame(self, seq: int, event: dict, text: str) -> Frame | None:
        try:
            # Made storable as the page's frames are, but never refused for size: it is what was said.
            # From the text as OpenAI sent it (its size is what it weighs), not the event written out again.
            return server_frame(seq, text, max_chars=settings.TRANSCRIPT_MAX_CHARS)
        except ValueError as error:
            log.warning("Witness of %s: event %s not stored: %s", self.call.call_id, event.get("type"), error)
            return None

    async def _flush(self) -> None:
        if self._flusher is not None:
            await asyncio.shield(self._flusher)

    # --- the lease row ------------------------------------------------------------------------

    async def _mark(self, state: str, attempts: int | None = None) -> None:
        if not await sync_to_async(leases.mark)(self.holder, self.call.pk, state, attempts=attempts):
            raise LeaseLost()  # another process holds the call now

    async def _finish(self, state: str | None, attempts: int | None = None) -> None:
        await sync_to_async(leases.finish)(self.holder, self.call.pk, state, attempts=attempts)

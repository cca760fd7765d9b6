"""
The witnesses of one server process: a loop in the process's event loop that claims live calls
nobody witnesses (leases.py), runs one CallWitness per claimed call, and renews the leases.

    every scan_every seconds (or when woken: a call was just bound)   claim ≤ claim_per_scan calls
    (at once again after a full batch, so a backlog is not paced at claim_per_scan a scan)
    every heartbeat_every seconds                                      renew the leases it holds;
        drop the witnesses whose lease another process took, end those whose conversation closed

A lease lasts lease_seconds (10) and is renewed every heartbeat_every (3; checked on each round,
so at most 4 s apart): a process that dies stops renewing, and another process's scan takes its
calls over within lease + scan seconds (≤ 12 s; the contract says 15).
Claiming a bounded number per scan, at slightly random moments, spreads the calls over processes.

Each round also sweeps for calls past REALTIME_MAX_SESSION_SECONDS (hangup.overdue: one indexed
query), witnessed or not, anyone's: the call id and the real key are all a hang-up needs, and the
hang-up's claim (hangup.py) lets exactly one process of those sweeping do it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
import socket

from asgiref.sync import sync_to_async
from django.conf import settings

from conversations.witness import hangup, leases
from conversations.witness.call import CallWitness, LeaseLost
from voiceproject.loopbound import PerLoop, detached_task

log = logging.getLogger(__name__)


def default_holder() -> str:
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{secrets.token_hex(4)}"


# Seconds before the next scan when the last one claimed a full batch.
RESCAN_AFTER = 0.1


class Supervisor:
    def __init__(
        self,
        holder: str | None = None,
        *,
        scan_every: float = 2.0,
        heartbeat_every: float = 3.0,
        lease_seconds: float = 10.0,
        claim_per_scan: int = 20,
        backoff: float = 0.5,
        backoff_max: float = 15.0,
        max_refusals: int = 3,
        api_key: str | None = None,
        base_url: str | None = None,
    ):
        self.holder = holder or default_holder()
        self.scan_every = scan_every
        self.heartbeat_every = heartbeat_every
        self.lease_seconds = lease_seconds
        self.claim_per_scan = claim_per_scan
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.max_refusals = max_refusals
        self._api_key = api_key
        self._base_url = base_url
        self.witnesses: dict[int, asyncio.Task] = {}  # RealtimeCall pk -> its witness
        self.hangups: dict[int, asyncio.Task] = {}  # RealtimeCall pk -> its hang-up (hangup.py)
        self.sweep_per_round = claim_per_scan
        self._task: asyncio.Task | None = None
        self._wake: asyncio.Event | None = None

    @property
    def api_key(self) -> str:
        return self._api_key or settings.OPENAI_API_KEY

    @property
    def base_url(self) -> str:
        return self._base_url or settings.OPENAI_BASE_URL

    # --- running --------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the loop (in the running event loop) if it is not running; look for calls now."""
        if self._wake is None:
            self._wake = asyncio.Event()
        if self._task is None or self._task.done():
            # Not the caller's context: the caller may be a request (loopbound.detached_task).
            self._task = detached_task(self._run(), name=f"witness supervisor {self.holder}")
        self._wake.set()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop(self, *, release: bool = True) -> None:
        """Stop the loop and every witness. release=False leaves the leases to run out, as when the
        process dies (tests); release=True lets another process take the calls over at once."""
        tasks = [
            t for t in (self._task, *self.witnesses.values(), *self.hangups.values()) if t is not None and not t.done()
        ]
        held = list(self.witnesses)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None
        if release and held:
            try:
                await sync_to_async(leases.release)(self.holder, held)
            except Exception:  # the database is gone too (shutting down)
                log.exception("Releasing the witness leases failed")

    async def aclose(self) -> None:  # voiceproject.loopbound: the event loop is shutting down
        await self.stop(release=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last_beat = loop.time()
        while True:
            claimed = []
            try:
                if self.witnesses and loop.time() - last_beat >= self.heartbeat_every:
                    last_beat = loop.time()
                    await self.heartbeat()
                elif not self.witnesses:
                    last_beat = loop.time()
                claimed = await self.scan()
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:  # e.g. the database is away for a moment: try again next round
                log.exception("Witness supervisor round failed")
            self._wake.clear()
            # A full batch: more calls may be waiting (a take-over of a dead process's hundreds).
            # Come back almost at once, leaving other processes a moment to claim their share.
            full = len(claimed) >= self.claim_per_scan
            pause = RESCAN_AFTER if full else min(self.scan_every, self.heartbeat_every)
            pause *= random.uniform(0.8, 1.0)
            try:
                async with asyncio.timeout(pause):
                    await self._wake.wait()
            except TimeoutError:
                pass

    # --- one round ------------------------------------------------------------------------------

    async def scan(self) -> list[int]:
        """Claim live calls without a valid lease and start their witnesses; their pks."""
        claimed = await sync_to_async(leases.claim)(
            self.holder, self.lease_seconds, limit=self.claim_per_scan, skip=tuple(self.witnesses)
        )
        for call in claimed:
            self.witnesses[call.pk] = asyncio.get_running_loop().create_task(
                self._witness(call), name=f"witness {call.call_id}"
            )
        return [call.pk for call in claimed]

    async def sweep(self) -> list[int]:
        """Hang up the calls past the session cap (those another process claims first are left to it)."""
        due = await sync_to_async(hangup.overdue)(self.sweep_per_round)
        for pk in due:
            self.hang_up(pk, hangup.SESSION_CAP)
        return due

    def hang_up(self, pk: int, reason: str) -> asyncio.Task:
        """Hang call `pk` up in a task of its own (retries take seconds: the loop goes on meanwhile)."""
        task = self.hangups.get(pk)
        if task is None or task.done():
            task = asyncio.get_running_loop().create_task(
                hangup.request(pk, reason, backoff=self.backoff), name=f"hang-up {pk}"
            )
            self.hangups[pk] = task
            task.add_done_callback(lambda done, pk=pk: self.hangups.get(pk) is done and self.hangups.pop(pk))
        return task

    async def heartbeat(self) -> None:
        held = await sync_to_async(leases.renew)(self.holder, list(self.witnesses), self.lease_seconds)
        for pk in set(self.witnesses) - held:
            log.warning("Witness lease of call %s was lost to another process", pk)
            self.witnesses[pk].cancel()
        over = await sync_to_async(leases.closed)(held)
        for pk in over:
            task = self.witnesses.get(pk)
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            await sync_to_async(leases.finish)(self.holder, pk, None)

    async def _witness(self, call: leases.Claimed) -> None:
        try:
            await CallWitness(self, call).run()
        except LeaseLost:
            pass
        except asyncio.CancelledError:
            raise
        except Exception:  # its lease runs out and the call is claimed again
            log.exception("Witness of %s failed", call.call_id)
        finally:
            self.witnesses.pop(call.pk, None)

    def backoff_delay(self, tries: int) -> float:
        return min(self.backoff_max, self.backoff * 2 ** max(0, tries - 1)) * random.uniform(0.8, 1.2)


# The process's supervisor (one per event loop: daphne has one; each test has its own, stopped
# when the test's loop shuts down).
supervisors: PerLoop[Supervisor] = PerLoop(Supervisor)

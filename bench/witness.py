"""
The witness at scale: N calls witnessed by ONE process (this one) against the Realtime stand-in,
without media (the stand-in's bare calls: `POST /_standin/calls`, no WebRTC).

    python bench/witness.py                       # 500 calls, 2 turns each, 2 events/s per call
    python bench/witness.py --calls 50 --turns 1  # a quick look
    python bench/witness.py --tracemalloc         # also the Python heap per witness, and where it goes

The stand-in runs as another process (its CPU and memory are not this process's). This process
runs the app's witness supervisor (conversations/witness/) on a fresh SQLite database, as daphne
would: one event loop, the journal writer, one database thread.

Printed, one figure per line:
- memory per witness: this process's unique memory (USS, psutil) with N witnesses attached, less
  the same with 0, over N (the calls exist and the code is warm in both); with --tracemalloc, the
  same for the Python heap (tracemalloc inflates USS, so it is a separate run);
- time for one process to attach all N (the supervisor claims `claim_per_scan` calls per scan);
- CPU while the N witnesses are attached and idle (heartbeats), % of one core;
- CPU per witnessed event: this process's CPU (all threads) while the calls play their scripts,
  over the events the sidebands delivered and over those journaled; beside it, in the same run,
  the same journaled events written as server frames straight through the journal writer (no
  sideband: `server_frame` + `get_writer().write`, same pacing), and the ratio of the two;
- checks: every call's forwarded events journaled once, every witness ended with its call.

See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.socket_load import configure_environment
from tests.support.processes import free_port

API_KEY = "sk-bench-" + secrets.token_hex(8)
WARM_UP_CALLS = 5


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=500, help="witnessed calls (default 500)")
    parser.add_argument("--turns", type=int, default=2, help="spoken turns per call (default 2)")
    parser.add_argument("--rate", type=float, default=2.0, help="server events/s per call (default 2)")
    parser.add_argument("--claim-per-scan", type=int, default=None, help="the supervisor's (default: its own, 20)")
    parser.add_argument("--tracemalloc", action="store_true", help="measure the Python heap too (slower)")
    parser.add_argument("--keep", action="store_true", help="keep the database and the stand-in's log")
    return parser.parse_args()


def call_script(turns: int, rate: float) -> tuple[list[dict], list[dict]]:
    """The steps of one bench call (wait for the gate "go", then the turns paced at `rate`, then
    end the call) and the events it sends."""
    from tests.realtime_standin import scripts

    events = [step["send"] for step in scripts.conversation(turns) if "send" in step]
    steps: list[dict] = [{"gate": "go"}]
    for event in events:
        steps += [{"send": event}, {"sleep": 1 / rate}]
    return steps + [{"close": "peer"}], events


def start_standin(workdir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = open(workdir / "standin.log", "ab")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.realtime_standin", "--port", str(port), "--api-key", API_KEY, "--quiet"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    import httpx

    origin = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{origin}/_standin/requests", timeout=1)
            return process, origin
        except httpx.HTTPError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"the stand-in did not start; see {workdir / 'standin.log'}") from None
            time.sleep(0.1)


class Bench:
    def __init__(self, args, origin: str):
        self.args = args
        self.origin = origin
        self.steps, self.events = call_script(args.turns, args.rate)
        import psutil

        self.me = psutil.Process()

    # --- helpers -----------------------------------------------------------------------------

    def cpu(self) -> float:
        times = self.me.cpu_times()
        return times.user + times.system

    def uss(self) -> int:
        return self.me.memory_full_info().uss

    async def control(self, path: str, body: dict) -> dict:
        import httpx

        async with httpx.AsyncClient(timeout=60) as client:
            response = await client.post(f"{self.origin}/_standin/{path}", json=body)
            response.raise_for_status()
            return response.json()

    async def new_calls(self, count: int, steps: list[dict]) -> list[int]:
        """`count` bare calls at the stand-in, each bound to a new conversation; the RealtimeCall pks."""
        from asgiref.sync import sync_to_async

        call_ids = (await self.control("calls", {"count": count, "script": steps}))["call_ids"]
        return await sync_to_async(_record_calls)(call_ids)

    async def until(self, check, timeout: float) -> float:
        """Poll `check` (sync, in the database thread) every 0.2 s until true; the seconds it took."""
        from asgiref.sync import sync_to_async

        start = time.perf_counter()
        while not await sync_to_async(check)():
            if time.perf_counter() - start > timeout:
                raise TimeoutError(f"not within {timeout} s: {check.__name__}")
            await asyncio.sleep(0.2)
        return time.perf_counter() - start

    # --- the run -----------------------------------------------------------------------------

    async def run(self) -> None:
        import tracemalloc

        from conversations.witness.supervisor import Supervisor

        args, n = self.args, self.args.calls
        options = {"api_key": API_KEY, "base_url": f"{self.origin}/v1"}
        if args.claim_per_scan:
            options["claim_per_scan"] = args.claim_per_scan
        supervisor = Supervisor(**options)
        print(f"# {n} calls, {len(self.events)} server events each at {args.rate}/s, one process, SQLite; "
              f"claim_per_scan {supervisor.claim_per_scan}, scan_every {supervisor.scan_every} s", flush=True)  # fmt: skip

        # Warm up: a few calls witnessed from start to end (imports, connections, code paths).
        warm = await self.new_calls(WARM_UP_CALLS, [{"gate": "go"}, *self.steps[1:6], {"close": "peer"}])
        supervisor.start()
        await self.until(lambda: _count_state(warm, "attached") == len(warm), 60)
        await self.control("calls/release", {"gate": "go"})
        await self.until(lambda: _count_ended(warm) == len(warm), 60)
        await supervisor.stop()  # so that it claims none of the N before the baseline is measured

        # N calls waiting at their gate; nobody witnesses them yet.
        pks = await self.new_calls(n, self.steps)
        baseline_conversations = await asyncio.to_thread(_new_conversations, n)
        await asyncio.sleep(1)
        if args.tracemalloc:
            tracemalloc.start()
        gc.collect()
        uss0, heap0 = self.uss(), tracemalloc.get_traced_memory()[0] if args.tracemalloc else 0

        # Attach them all.
        supervisor.start()
        attach_seconds = await self.until(lambda: _count_state(pks, "attached") == n, 600)
        await asyncio.sleep(2)  # their session.update sent and answered
        gc.collect()
        uss1, heap1 = self.uss(), tracemalloc.get_traced_memory()[0] if args.tracemalloc else 0
        print(f"time to attach {n} calls, one process: {attach_seconds:.1f} s")
        print(f"memory per witness, USS: {(uss1 - uss0) / n / 1024:.1f} KB  (target <= 256 KB)")
        if args.tracemalloc:
            print(f"memory per witness, Python heap (tracemalloc): {(heap1 - heap0) / n / 1024:.1f} KB")
            top = tracemalloc.take_snapshot().statistics("filename")[:6]
            for stat in top:
                print(f"#   {stat.size / n / 1024:6.1f} KB/witness  {stat.traceback[0].filename}")
            tracemalloc.stop()

        # Idle, attached: what the heartbeats cost.
        cpu, wall = self.cpu(), time.perf_counter()
        await asyncio.sleep(6)
        idle = (self.cpu() - cpu) / (time.perf_counter() - wall)
        print(f"CPU with {n} witnesses attached and idle, % of one core: {100 * idle:.1f}")

        # The calls play: CPU per witnessed event.
        journaled0 = await asyncio.to_thread(_server_events, None)
        cpu, wall = self.cpu(), time.perf_counter()
        await self.control("calls/release", {"gate": "go"})
        await self.until(lambda: _count_ended(pks) == n, 600)
        witness_cpu, witness_wall = self.cpu() - cpu, time.perf_counter() - wall
        delivered = n * len(self.events)
        journaled = await asyncio.to_thread(_server_events, None) - journaled0
        print(f"events delivered on the sidebands: {delivered} in {witness_wall:.1f} s")
        print(f"events journaled by the witnesses: {journaled}")
        print(f"witness CPU per delivered event: {1000 * witness_cpu / delivered:.3f} ms")
        print(f"witness CPU per journaled event: {1000 * witness_cpu / journaled:.3f} ms")
        print(f"witness CPU, % of one core: {100 * witness_cpu / witness_wall:.0f}", flush=True)

        # Baseline: the same journaled events, same pacing, straight through the writer.
        cpu, wall = self.cpu(), time.perf_counter()
        written = await self.direct(baseline_conversations)
        direct_cpu, direct_wall = self.cpu() - cpu, time.perf_counter() - wall
        print(f"direct writer CPU per journaled event (no sideband, same pacing): "
              f"{1000 * direct_cpu / written:.3f} ms  ({direct_wall:.1f} s)")  # fmt: skip
        print(f"ratio witness/direct writer, CPU per journaled event: {(witness_cpu / journaled) / (direct_cpu / written):.2f}")

        lost, doubled, unended = await asyncio.to_thread(_check, pks, self.events)
        print(f"calls with forwarded events not journaled: {lost}")
        print(f"calls with events journaled twice: {doubled}")
        print(f"witnesses not ended with their call: {unended}")
        print(f"witnesses still running: {len(supervisor.witnesses)}")
        await supervisor.stop()
        if lost or doubled or unended:
            sys.exit(1)

    async def direct(self, conversation_ids: list[int]) -> int:
        from django.conf import settings

        from conversations.transcript.forwarded import forwarded_types
        from conversations.transcript.frames import server_frame
        from conversations.transcript.writer import get_writer

        forwarded = set(forwarded_types())
        writer = get_writer()

        async def one(conversation_id: int) -> int:
            seq = 0
            await asyncio.sleep(1 / self.args.rate * (conversation_id % 100) / 100)  # not in lockstep
            for event in self.events:
                if event["type"] in forwarded:
                    seq += 1
                    event = {**event, "event_id": "event_" + secrets.token_hex(8)}
                    frame = server_frame(seq, json.dumps(event), max_chars=settings.TRANSCRIPT_MAX_CHARS)
                    await writer.write(conversation_id, [frame])
                await asyncio.sleep(1 / self.args.rate)
            return seq

        return sum(await asyncio.gather(*(one(c) for c in conversation_ids)))


# --- database helpers (sync) ----------------------------------------------------------------------


def _new_conversations(n: int) -> list[int]:
    from django.contrib.auth import get_user_model
    from django.db import connection

    from conversations.models import Conversation

    user, _ = get_user_model().objects.get_or_create(username="witness-bench")
    made = Conversation.objects.bulk_create(
        [Conversation(user=user, model="gpt-realtime-2.1", voice="marin") for _ in range(n)]
    )
    ids = [c.pk for c in made]
    connection.close()
    return ids


def _record_calls(call_ids: list[str]) -> list[int]:
    from conversations.models import RealtimeCall

    conversations = _new_conversations(len(call_ids))
    rows = RealtimeCall.objects.bulk_create(
        [RealtimeCall(conversation_id=c, call_id=i, source="server") for c, i in zip(conversations, call_ids)]
    )
    return [r.pk for r in rows]


def _count_state(pks, state) -> int:
    from conversations.models import RealtimeCall

    return RealtimeCall.objects.filter(pk__in=pks, witness_state=state).count()


def _count_ended(pks) -> int:
    from conversations.models import RealtimeCall

    return RealtimeCall.objects.filter(pk__in=pks, ended_at__isnull=False).count()


def _server_events(conversation_ids) -> int:
    from django.db import connection

    from conversations.models import Event

    count = Event.objects.filter(source="server").count()
    connection.close()
    return count


def _check(pks, events) -> tuple[int, int, int]:
    from django.db.models import Count

    from conversations.models import Event, RealtimeCall
    from conversations.transcript.forwarded import forwarded_types

    expected = sum(1 for e in events if e["type"] in forwarded_types())
    calls = list(RealtimeCall.objects.filter(pk__in=pks).values_list("conversation_id", "ended_at", "witness_holder"))
    counts = {
        row["conversation_id"]: row
        for row in Event.objects.filter(conversation_id__in=[c for c, _, _ in calls], source="server")
        .values("conversation_id").annotate(n=Count("id"), ids=Count("payload__event_id", distinct=True))
    }  # fmt: skip
    lost = sum(1 for c, _, _ in calls if counts.get(c, {"ids": 0})["ids"] < expected)
    doubled = sum(1 for c, _, _ in calls if counts.get(c, {"n": 0})["n"] > counts.get(c, {"ids": 0})["ids"])
    unended = sum(1 for _, ended, holder in calls if ended is None or holder)
    return lost, doubled, unended


def main():
    args = parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="witness_bench_"))
    os.environ["OPENAI_API_KEY"] = API_KEY
    os.environ["REALTIME_WITNESS"] = "true"
    process = None
    try:
        process, origin = start_standin(workdir)
        os.environ["OPENAI_BASE_URL"] = f"{origin}/v1"
        args.redis_url = None
        configure_environment(f"sqlite:///{workdir / 'bench.sqlite3'}", args)
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        asyncio.run(Bench(args, origin).run())
    finally:
        if process is not None:
            process.terminate()
            process.wait(10)
        if args.keep:
            print(f"# kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

"""
Load benchmark of the transcript socket (/ws/conversations/<uuid>/) through real daphne servers.

For each N in --sockets: N signed-in users (real session cookies, made beforehand) each open a
socket to their own conversation and send M OpenAI server events (a realistic GA stream:
items, transcripts, response.done with usage, late user transcripts). By default every socket
keeps one frame in flight (it sends the next event when the previous one is acked), which
measures both the capacity and the ack latency at N concurrent sockets. Then each socket
resends its last few frames (must be acked, must change nothing).

Baseline, in the same run: the same N×M events written straight through the ORM by this
process, with the same journal function, one transaction per event (as a server without
batching would), no socket.

Printed, one figure per line: events persisted per second (sockets and direct ORM) and their
ratio, ack latency p50/p99 (send → ack, measured by the client), lost and duplicated events,
and where the CPU went: each daphne process, this load generator, the whole machine.

With several counts in --servers (e.g. `--servers 1 2`), each count of daphne processes is
started in turn and measured at every N; the sockets are dealt round-robin over the processes'
ports (no proxy in between), and the throughput of each count is compared with the first.

    python bench/socket_load.py                          # SQLite (fresh file), N = 50 and 200
    python bench/socket_load.py --database-url postgres://postgres@127.0.0.1:5432/postgres \
        --redis-url redis://127.0.0.1:6379/4            # PostgreSQL (a fresh database) + Redis
    python bench/socket_load.py --servers 1 2 ...        # 1 daphne process, then 2, in one run
    python bench/socket_load.py --server-url ws://127.0.0.1:8001 --database-url … # servers you run
    python bench/socket_load.py --streams browser both   # also with the witness's stream journaled

With `--streams browser both`, each N is measured twice in the same run: the page's stream only,
then with each event also journaled as the server's witness journals it (bench/both_streams_asgi.py,
which the daphne processes then serve), side by side.

See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
RESEND = 5  # frames each socket sends again at the end


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sockets", default="50,200", help="comma-separated socket counts (default 50,200)")
    parser.add_argument("--events", type=int, default=50, help="events per socket (default 50)")
    parser.add_argument("--window", type=int, default=1, help="frames each socket keeps in flight (default 1)")
    parser.add_argument("--rate", type=float, default=0, help="events/s per socket; 0 = as fast as acks come back")
    parser.add_argument("--database-url", help="PostgreSQL server: a fresh database is created on it (and dropped)")
    parser.add_argument("--redis-url", help="use the Redis channel layer (as REDIS_URL)")
    parser.add_argument(
        "--servers", type=int, nargs="+", default=[1],
        help="daphne processes to start; several counts are measured in turn (e.g. --servers 1 2)",
    )  # fmt: skip
    parser.add_argument(
        "--server-url", action="append", default=[],
        help="use running servers instead (repeatable; needs --database-url of their database, used as it is, "
        "and their SECRET_KEY in the environment)",
    )  # fmt: skip
    parser.add_argument(
        "--streams", nargs="+", choices=("browser", "both"), default=["browser"],
        help="browser: the page's stream only; both: each event also journaled as the witness journals it "
        "(bench/both_streams_asgi.py); several are measured in turn, e.g. --streams browser both",
    )  # fmt: skip
    parser.add_argument("--skip-baseline", action="store_true", help="no direct-ORM baseline")
    parser.add_argument("--keep", action="store_true", help="keep the fresh database and the server logs")
    return parser.parse_args()


# --- the fresh database ------------------------------------------------------------------------


@contextmanager
def fresh_database(args, workdir: Path):
    """Yields the DATABASE_URL to use: a new SQLite file, or a new PostgreSQL database."""
    if args.server_url:
        if not args.database_url:
            sys.exit("--server-url needs --database-url (the database those servers use)")
        yield args.database_url
        return
    if not args.database_url:
        yield f"sqlite:///{workdir / 'bench.sqlite3'}"
        return
    import psycopg

    parts = urlsplit(args.database_url)
    name = f"voicebench_{os.getpid()}_{secrets.token_hex(3)}"
    admin = urlunsplit((parts.scheme.replace("postgresql", "postgres"), parts.netloc, parts.path or "/postgres", "", ""))
    with psycopg.connect(admin.replace("postgres://", "postgresql://", 1), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))
    finally:
        if not args.keep:
            with psycopg.connect(admin.replace("postgres://", "postgresql://", 1), autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def configure_environment(database_url, args):
    os.environ["DJANGO_SETTINGS_MODULE"] = "voiceproject.settings"
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
    os.environ["DEBUG"] = "false"
    os.environ["ALLOWED_HOSTS"] = "127.0.0.1,localhost"
    os.environ["LOG_LEVEL"] = "WARNING"
    if args.redis_url:
        os.environ["REDIS_URL"] = args.redis_url
    else:
        os.environ.pop("REDIS_URL", None)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


# --- servers -------------------------------------------------------------------------------------


@contextmanager
def servers(args, count: int, workdir: Path):
    """Yields the ws:// base URLs and the processes: the given URLs (no processes), or `count`
    daphne processes started here (tests/support/processes.py, with this process's environment)."""
    if args.server_url:
        yield [u.rstrip("/") for u in args.server_url], []
        return
    from tests.support.processes import LiveServer

    started = []
    try:
        for i in range(count):
            app = "bench.both_streams_asgi:application" if "both" in args.streams else "voiceproject.asgi:application"
            started.append(LiveServer(os.environ.copy(), log=workdir / f"daphne-{count}-{i}.log", app=app))
            started[-1].start()
        yield [server.ws_url for server in started], [server.process for server in started]
    finally:
        for server in started:
            server.stop()


# --- the workload ----------------------------------------------------------------------------------


def conversation_events(tag: str, count: int) -> list[dict]:
    """A realistic GA event stream of `count` events (8 per turn; the user transcript comes late)."""
    events = []
    turn = 0
    while len(events) < count:
        user, reply, response = f"item_{tag}_{turn}u", f"item_{tag}_{turn}a", f"resp_{tag}_{turn}"
        said = f"Turn {turn}: could you tell me something interesting about the number {turn * 7 + 3}?"
        answer = f"Sure. {turn * 7 + 3} is a fine number; here is a fact about it that takes a sentence or two to say."
        usage = {"total_tokens": 253, "input_tokens": 132, "output_tokens": 121,
                 "input_token_details": {"text_tokens": 119, "audio_tokens": 13, "cached_tokens": 64},
                 "output_token_details": {"text_tokens": 30, "audio_tokens": 91}}  # fmt: skip
        user_item = {"id": user, "type": "message", "status": "completed", "role": "user",
                     "content": [{"type": "input_audio", "transcript": None}]}  # fmt: skip
        reply_item = {"id": reply, "type": "message", "status": "completed", "role": "assistant",
                      "content": [{"type": "output_audio", "transcript": answer}]}  # fmt: skip
        events += [
            {"type": "conversation.item.added", "event_id": f"ev_{tag}_{turn}_1", "previous_item_id": None, "item": user_item},
            {"type": "conversation.item.done", "event_id": f"ev_{tag}_{turn}_2", "previous_item_id": None, "item": user_item},
            {"type": "conversation.item.added", "event_id": f"ev_{tag}_{turn}_3", "previous_item_id": user,
             "item": {**reply_item, "status": "in_progress", "content": []}},
            {"type": "response.output_audio_transcript.done", "event_id": f"ev_{tag}_{turn}_4", "response_id": response,
             "item_id": reply, "output_index": 0, "content_index": 0, "transcript": answer},
            {"type": "conversation.item.done", "event_id": f"ev_{tag}_{turn}_5", "previous_item_id": user, "item": reply_item},
            {"type": "response.done", "event_id": f"ev_{tag}_{turn}_6",
             "response": {"object": "realtime.response", "id": response, "status": "completed", "status_details": None,
                          "output": [reply_item], "usage": usage}},
            {"type": "output_audio_buffer.stopped", "event_id": f"ev_{tag}_{turn}_7", "response_id": response},
            {"type": "conversation.item.input_audio_transcription.completed", "event_id": f"ev_{tag}_{turn}_8",
             "item_id": user, "content_index": 0, "transcript": said,
             "usage": {"type": "tokens", "total_tokens": 26, "input_tokens": 17, "output_tokens": 9}},
        ]  # fmt: skip
        turn += 1
    return events[:count]


def prepare(n: int, m: int, label: str):
    """N users with sessions and two conversations each (socket run, baseline); their events."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.db import SessionStore

    from conversations.models import Conversation

    User = get_user_model()
    users = []
    for i in range(n):
        user = User(username=f"bench_{label}_{i}")
        user.set_unusable_password()
        users.append(user)
    User.objects.bulk_create(users)
    users = list(User.objects.filter(username__startswith=f"bench_{label}_").order_by("pk"))
    sockets, direct = [], []
    for i, user in enumerate(users):
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        live = Conversation.objects.create(user=user, model="gpt-realtime-2.1", voice="marin")
        baseline = Conversation.objects.create(user=user, model="gpt-realtime-2.1", voice="marin")
        sockets.append((session.session_key, live, conversation_events(f"{label}s{i}", m)))
        direct.append((baseline, conversation_events(f"{label}d{i}", m)))
    return sockets, direct


def run_direct(direct) -> float:
    """The baseline: every event in its own transaction through journal.append_frames."""
    from django.db import connection

    from conversations.transcript import journal
    from conversations.transcript.frames import Frame

    m = len(direct[0][1])
    start = time.perf_counter()
    for index in range(m):  # interleaved across conversations, as the sockets' frames arrive
        for conversation, events in direct:
            journal.append_frames(conversation.pk, [Frame("event", index + 1, events[index])])
    elapsed = time.perf_counter() - start
    connection.close()
    return len(direct) * m / elapsed


class CpuUsage:
    """CPU time spent inside a `with` block by each server process, by this process (the load
    generator, all its threads) and by the whole machine (everything on it, neighbours too)."""

    def __init__(self, processes):
        import psutil

        self._psutil = psutil
        self._servers = [psutil.Process(p.pid) for p in processes]
        self._self = psutil.Process()

    @staticmethod
    def _seconds(process) -> float:
        times = process.cpu_times()
        return times.user + times.system

    def _sample(self):
        machine = self._psutil.cpu_times()
        return (
            time.perf_counter(),
            [self._seconds(p) for p in self._servers],
            self._seconds(self._self),
            sum(getattr(machine, field, 0.0) for field in ("user", "nice", "system", "irq", "softirq")),
        )

    def __enter__(self):
        self._before = self._sample()
        return self

    def __exit__(self, *exc):
        after = self._sample()
        self.wall = after[0] - self._before[0]
        self.servers = [a - b for a, b in zip(after[1], self._before[1])]  # CPU seconds each
        self.generator = after[2] - self._before[2]
        self.machine = after[3] - self._before[3]
        self.cores = self._psutil.cpu_count()


async def run_sockets(urls, sockets, window: int, rate: float, cpu: CpuUsage, both: bool = False):
    import aiohttp

    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        opened = []
        gate = asyncio.Semaphore(50)  # handshakes at a time

        async def connect(i, cookie, conversation):
            base = urls[i % len(urls)]
            origin = "http://" + base.split("://", 1)[1]
            async with gate:
                ws = await session.ws_connect(
                    f"{base}/ws/conversations/{conversation.uuid}/" + ("?both=1" if both else ""),
                    headers={"Cookie": f"sessionid={cookie}", "Origin": origin},
                    max_msg_size=0, heartbeat=None,
                )  # fmt: skip
                ready = json.loads((await ws.receive(timeout=30)).data)
                assert ready["type"] == "ready", ready
            return ws

        opened = await asyncio.gather(*(connect(i, c, conv) for i, (c, conv, _) in enumerate(sockets)))
        frames = [
            [json.dumps({"type": "event", "seq": s, "event": e}) for s, e in enumerate(events, start=1)]
            for _, _, events in sockets
        ]

        async def drive(ws, texts):
            sent_at: dict[int, float] = {}
            next_seq, acked = 1, 0
            # Paced sockets start at a random point of their first interval: real conversations
            # are not in lockstep (in step, all N frames would land at once, every interval).
            began = time.perf_counter() + (random.uniform(0, 1 / rate) if rate else 0)
            while acked < len(texts):
                while next_seq <= len(texts) and len(sent_at) < window:
                    if rate:
                        await asyncio.sleep(max(0.0, began + (next_seq - 1) / rate - time.perf_counter()))
                    sent_at[next_seq] = time.perf_counter()
                    await ws.send_str(texts[next_seq - 1])
                    next_seq += 1
                message = json.loads((await ws.receive(timeout=60)).data)
                if message.get("type") != "ack":
                    raise RuntimeError(f"unexpected reply {message}")
                latencies.append(time.perf_counter() - sent_at.pop(message["seq"]))
                acked += 1

        with cpu:  # the steady state only: not the handshakes, nor the resends and closes
            await asyncio.gather(*(drive(ws, texts) for ws, texts in zip(opened, frames)))
            if both:  # and until the second stream is stored too (its writes do not hold the acks)
                from asgiref.sync import sync_to_async

                expected = sum(len(texts) for texts in frames)
                ids = [conversation.pk for _, conversation, _ in sockets]
                deadline = time.perf_counter() + 120
                while await sync_to_async(server_rows)(ids) < expected and time.perf_counter() < deadline:
                    await asyncio.sleep(0.02)
        elapsed = cpu.wall

        async def resend(ws, texts):
            for text in texts[-RESEND:]:
                await ws.send_str(text)
            for _ in texts[-RESEND:]:
                assert json.loads((await ws.receive(timeout=60)).data)["type"] == "ack"
            await ws.close()

        await asyncio.gather(*(resend(ws, texts) for ws, texts in zip(opened, frames)))
    return elapsed, latencies


def server_rows(ids) -> int:
    from django.db import connection

    from conversations.models import Event

    count = Event.objects.filter(conversation_id__in=ids, source="server").count()
    connection.close()
    return count


def verify(conversations_and_events, source: str = "browser") -> tuple[int, int, int]:
    """(lost events, duplicated events, conversations whose transcript or usage is off), of one
    stream; the transcript and usage checked are the conversation's (both streams folded)."""
    from django.db.models import Count, Max, Min
    from django.utils import timezone

    from conversations.models import Conversation, Event
    from conversations.transcript import reducer

    ids = [c.pk for c, _ in conversations_and_events]
    stats = {
        row["conversation_id"]: row
        for row in Event.objects.filter(conversation_id__in=ids, source=source).values("conversation_id")
        .annotate(n=Count("id"), distinct=Count("payload__event_id", distinct=True), lo=Min("seq"), hi=Max("seq"))
    }  # fmt: skip
    lost = duplicated = wrong = 0
    for conversation, events in conversations_and_events:
        row = stats.get(conversation.pk, {"n": 0, "distinct": 0})
        lost += len(events) - row["distinct"]
        duplicated += row["n"] - row["distinct"]
        state = reducer.TranscriptState()
        changes = reducer.fold(state, [(e, timezone.now()) for e in events])
        fresh = Conversation.objects.get(pk=conversation.pk)
        if (
            fresh.utterances.count() != len(state.utterances)
            or fresh.usages.count() != len(changes.usages)
            or fresh.input_tokens != sum(u.counts["input_tokens"] for u in changes.usages)
            or fresh.transcription_tokens != changes.transcription_tokens
        ):
            wrong += 1
    return lost, duplicated, wrong


def verify_server_stream(conversations_and_events) -> tuple[int, int, int]:
    """Of the witness-like stream: (lost events, duplicated events, conversations with a completed
    line that is not verified; a socket's last turn may be cut short, its line still pending)."""
    from conversations.models import Utterance

    lost, duplicated, _ = verify(conversations_and_events, source="server")
    ids = [c.pk for c, _ in conversations_and_events]
    unverified = Utterance.objects.filter(
        conversation_id__in=ids, verified=False, status=Utterance.Status.COMPLETED
    ).values("conversation_id").distinct().count()
    return lost, duplicated, unverified


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def main():
    args = parse_args()
    counts = [int(x) for x in args.sockets.split(",") if x.strip()]
    server_counts = [len(args.server_url)] if args.server_url else args.servers
    workdir = Path(tempfile.mkdtemp(prefix="socket_load_"))
    rates = {}  # (server processes, sockets) -> events persisted per second
    try:
        with fresh_database(args, workdir) as database_url:
            configure_environment(database_url, args)
            from django.core.management import call_command
            from django.db import connection

            call_command("migrate", verbosity=0)
            backend = connection.vendor
            connection.close()
            for servers_count in server_counts:
                with servers(args, servers_count, workdir) as (urls, processes):
                    print(f"# {backend}, channel layer {'redis' if args.redis_url else 'in-memory'}, "
                          f"{len(urls)} server process(es), {args.events} events per socket, window {args.window}"
                          + (f", {args.rate}/s per socket" if args.rate else ""), flush=True)  # fmt: skip
                    for n in counts:
                        direct_rate = None
                        for streams in args.streams:
                            both = streams == "both"
                            kind = ", both streams" if both else ", browser only" if len(args.streams) > 1 else ""
                            tag = f"[{len(urls)} server{'s' if len(urls) > 1 else ''}, {n} sockets{kind}]"
                            label = f"{servers_count}s{n}{streams[0]}x{secrets.token_hex(2)}"
                            sockets, direct = prepare(n, args.events, label)
                            connection.close()
                            cpu = CpuUsage(processes)
                            elapsed, latencies = asyncio.run(
                                run_sockets(urls, sockets, args.window, args.rate, cpu, both=both)
                            )
                            socket_rate = rates[servers_count, n, streams] = n * args.events / elapsed
                            pairs = [(conv, events) for _, conv, events in sockets]
                            lost, duplicated, wrong = verify(pairs)
                            s_lost, s_dup, unverified = verify_server_stream(pairs) if both else (0, 0, 0)
                            print(f"{tag} events persisted/s via sockets: {socket_rate:.0f}", flush=True)
                            # The baseline does not depend on the servers nor the streams: once per N.
                            if not args.skip_baseline and servers_count == server_counts[0] and direct_rate is None:
                                direct_rate = run_direct(direct)
                                d_lost, d_dup, d_wrong = verify(direct)
                                assert (d_lost, d_dup, d_wrong) == (0, 0, 0), "the baseline itself lost or doubled rows"
                                print(f"{tag} events persisted/s direct ORM (1 transaction/event): {direct_rate:.0f}")
                            if direct_rate:
                                print(f"{tag} ratio sockets/direct: {socket_rate / direct_rate:.2f}")
                            print(f"{tag} ack p50 ms: {statistics.median(latencies) * 1000:.1f}")
                            print(f"{tag} ack p99 ms: {percentile(latencies, 0.99) * 1000:.1f}")
                            print(f"{tag} ack max ms: {max(latencies) * 1000:.1f}")
                            print(f"{tag} lost events: {lost}")
                            print(f"{tag} duplicated events: {duplicated}")
                            print(f"{tag} conversations with a wrong transcript or usage: {wrong}")
                            if both:
                                print(f"{tag} server stream: lost events: {s_lost}, duplicated: {s_dup}")
                                print(f"{tag} conversations with a completed line not verified: {unverified}")
                            if processes:
                                busy = ", ".join(f"{100 * s / cpu.wall:.0f}" for s in cpu.servers)
                                print(f"{tag} daphne CPU, % of one core, per process: {busy}")
                                print(f"{tag} daphne CPU ms per socket event: {1000 * sum(cpu.servers) / (n * args.events):.2f}")
                            print(f"{tag} load generator CPU, % of one core: {100 * cpu.generator / cpu.wall:.0f}")
                            print(f"{tag} machine CPU busy, % of {cpu.cores} cores: "
                                  f"{100 * cpu.machine / cpu.wall / cpu.cores:.0f}", flush=True)  # fmt: skip
                            connection.close()
                            if lost or duplicated or wrong or s_lost or s_dup or unverified:
                                sys.exit(1)
                        if len(args.streams) > 1 and "browser" in args.streams and "both" in args.streams:
                            ratio = rates[servers_count, n, "both"] / rates[servers_count, n, "browser"]
                            print(f"[{n} sockets] throughput, both streams / browser only: {ratio:.2f}", flush=True)
            for servers_count in server_counts[1:]:
                for n in counts:
                    for streams in args.streams:
                        ratio = rates[servers_count, n, streams] / rates[server_counts[0], n, streams]
                        print(f"[{n} sockets, {streams}] throughput, {servers_count} server processes / "
                              f"{server_counts[0]}: {ratio:.2f}")  # fmt: skip
    finally:
        if args.keep:
            print(f"# kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

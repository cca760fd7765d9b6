"""
Load check: does one abusive user slow the transcript sockets of everybody else?

Through a real daphne server (bench/socket_load.py's set-up: a fresh database, real sessions).
In ONE run, on the same server:

1. quiet: V ordinary users each talk on one socket (paced: --rate events/s, a realistic pace)
   for --seconds; their ack latency (send → ack, measured by the client) is recorded;
2. abused: the same again (fresh conversations), while ONE other user tries to open
   --abuse-sockets sockets (half transcript, half live; they stay open and idle) and floods
   every transcript socket he got with event frames, --flood frames/s in all, without waiting
   for acks.

Printed: the ordinary users' ack p50/p99 in both phases and the p99 ratio (the hardening's goal:
under 2), how many of the abuser's sockets were accepted and refused (4429), and how many of
his frames were stored, refused `rate_limited`, or got no answer. With --unprotected the server
runs with the bounds lifted (MAX_SOCKETS_PER_USER=100000, no frame rate limit): what the same
abuse does without them.

    python bench/abuse.py                                 # SQLite, in-memory layer
    python bench/abuse.py --database-url postgres://postgres@127.0.0.1:5432/postgres \\
        --redis-url redis://127.0.0.1:6379/4              # PostgreSQL + Redis
    python bench/abuse.py --unprotected                   # the same abuse, bounds lifted
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from socket_load import (
    CpuUsage,
    configure_environment,
    conversation_events,
    fresh_database,
    percentile,
    prepare,
    servers,
)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=10, help="ordinary users, one socket each (default 10)")
    parser.add_argument("--rate", type=float, default=4, help="events/s per ordinary socket (default 4)")
    parser.add_argument("--seconds", type=float, default=15, help="length of each phase (default 15)")
    parser.add_argument("--abuse-sockets", type=int, default=300, help="sockets the abuser tries (default 300)")
    parser.add_argument("--flood", type=float, default=1000, help="abuser frames/s over his sockets (default 1000)")
    parser.add_argument("--unprotected", action="store_true", help="lift the socket and frame bounds")
    parser.add_argument("--database-url", help="PostgreSQL server: a fresh database is created on it (and dropped)")
    parser.add_argument("--redis-url", help="use Redis (channel layer, counters), as REDIS_URL")
    parser.add_argument("--keep", action="store_true", help="keep the fresh database and the server logs")
    args = parser.parse_args()
    args.server_url, args.servers = [], [1]
    return args


async def connect(session, url, cookie, conversation):
    ws = await session.ws_connect(
        f"{url}/ws/conversations/{conversation.uuid}/",
        headers={"Cookie": f"sessionid={cookie}", "Origin": "http://" + url.split("://", 1)[1]},
        heartbeat=None, max_msg_size=0,
    )  # fmt: skip
    assert json.loads((await ws.receive(timeout=30)).data)["type"] == "ready"
    return ws


async def ordinary(ws, conversation, events, rate, latencies):
    """One ordinary user: paced events, every ack timed."""
    sent_at: dict[int, float] = {}

    async def read():
        while len(sent_at) or not done.is_set():
            message = json.loads((await ws.receive(timeout=60)).data)
            if message["type"] != "ack":
                raise RuntimeError(f"an ordinary user got {message}")
            latencies.append(time.perf_counter() - sent_at.pop(message["seq"]))

    done = asyncio.Event()
    reader = asyncio.create_task(read())
    began = time.perf_counter() + 1 / rate * (hash(str(conversation.uuid)) % 100) / 100
    for seq, event in enumerate(events, start=1):
        await asyncio.sleep(max(0.0, began + (seq - 1) / rate - time.perf_counter()))
        sent_at[seq] = time.perf_counter()
        await ws.send_str(json.dumps({"type": "event", "seq": seq, "event": event}))
    done.set()
    await asyncio.wait_for(reader, 60)
    await ws.close()


async def abuser(session, url, cookie, conversations, attempts, flood, armed, stop, tally):
    """Opens what it can (and keeps it), floods its transcript sockets until `stop`."""
    import aiohttp

    headers = {"Cookie": f"sessionid={cookie}", "Origin": "http://" + url.split("://", 1)[1]}
    held, transcript = [], []
    gate = asyncio.Semaphore(20)

    async def attempt(i):
        conversation = conversations[i % len(conversations)]
        live = i % 2 == 1
        path = f"/ws/conversations/{conversation.uuid}/{'live/' if live else ''}"
        async with gate:
            ws = await session.ws_connect(url + path, headers=headers, heartbeat=None, max_msg_size=0)
            first = await ws.receive(timeout=60)
        if first.type != aiohttp.WSMsgType.TEXT:  # a close: refused
            tally[f"refused {ws.close_code}"] = tally.get(f"refused {ws.close_code}", 0) + 1
            await ws.close()
            return
        tally["accepted"] = tally.get("accepted", 0) + 1
        held.append(ws)
        if not live:
            transcript.append(ws)

    await asyncio.gather(*(attempt(i) for i in range(attempts)))
    armed.set()

    async def drain(ws):
        async for message in ws:
            if message.type == 1:
                kind = json.loads(message.data)
                key = kind["type"] if kind["type"] != "error" else kind["code"]
                tally[key] = tally.get(key, 0) + 1

    readers = [asyncio.create_task(drain(ws)) for ws in held]
    events = conversation_events("flood", 800)
    seqs = [0] * len(transcript)
    began = time.perf_counter()
    sent = 0
    while transcript and not stop.is_set():
        i = sent % len(transcript)
        if transcript[i].closed:
            tally[f"closed {transcript[i].close_code}"] = tally.get(f"closed {transcript[i].close_code}", 0) + 1
            transcript.pop(i)
            seqs.pop(i)
            continue
        seqs[i] += 1
        text = json.dumps({"type": "event", "seq": seqs[i], "event": events[seqs[i] % len(events)]})
        await transcript[i].send_str(text)
        sent += 1
        await asyncio.sleep(max(0.0, began + sent / flood - time.perf_counter()))
    tally["frames sent"] = sent
    for ws in held:
        await ws.close()
    for reader in readers:
        reader.cancel()


async def phase(url, ordinary_users, rate, seconds, abuse=None, cpu=None):
    import aiohttp

    latencies: list[float] = []
    tally: dict = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        stop = asyncio.Event()
        flooding = None
        if abuse is not None:
            cookie, conversations, attempts, flood = abuse
            armed = asyncio.Event()
            flooding = asyncio.create_task(
                abuser(session, url, cookie, conversations, attempts, flood, armed, stop, tally)
            )
            await armed.wait()
            await asyncio.sleep(1)  # the flood is on
        count = int(rate * seconds)
        # All connected first: a handshake's database work is not what is measured.
        opened = await asyncio.gather(*(connect(session, url, c, conv) for c, conv, _ in ordinary_users))
        with cpu:
            await asyncio.gather(
                *(ordinary(ws, conv, events[:count], rate, latencies) for ws, (_, conv, events) in zip(opened, ordinary_users))
            )
        stop.set()
        if flooding is not None:
            await flooding
    return latencies, tally


def main():
    args = parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="abuse_"))
    try:
        with fresh_database(args, workdir) as database_url:
            configure_environment(database_url, args)
            if args.unprotected:
                os.environ["MAX_SOCKETS_PER_USER"] = os.environ["MAX_SOCKETS_PER_CONVERSATION"] = "100000"
                os.environ["TRANSCRIPT_FRAMES_PER_SECOND_PER_USER"] = "0"
            from django.core.management import call_command
            from django.db import connection

            call_command("migrate", verbosity=0)
            backend = connection.vendor
            events = int(args.rate * args.seconds)
            quiet, _ = prepare(args.users, events, "quiet")
            loud, _ = prepare(args.users, events, "loud")
            bad, _ = prepare(1, 1, "abuser")
            from conversations.models import Conversation

            abuser_conversations = [bad[0][1]] + [
                Conversation.objects.create(user=bad[0][1].user, model="gpt-realtime-2.1", voice="marin")
                for _ in range(29)
            ]
            connection.close()
            with servers(args, 1, workdir) as (urls, processes):
                print(f"# {backend}, {'redis' if args.redis_url else 'in-memory'} layer, 1 daphne process, "
                      f"{args.users} ordinary sockets at {args.rate}/s for {args.seconds:.0f} s; abuser: "
                      f"{args.abuse_sockets} sockets, {args.flood:.0f} frames/s"
                      + (" — BOUNDS LIFTED" if args.unprotected else ""), flush=True)  # fmt: skip
                quiet_cpu, loud_cpu = CpuUsage(processes), CpuUsage(processes)
                before, _ = asyncio.run(phase(urls[0], quiet, args.rate, args.seconds, cpu=quiet_cpu))
                abuse = (bad[0][0], abuser_conversations, args.abuse_sockets, args.flood)
                during, tally = asyncio.run(phase(urls[0], loud, args.rate, args.seconds, abuse, cpu=loud_cpu))
            for name, values, cpu in (("quiet", before, quiet_cpu), ("abused", during, loud_cpu)):
                print(f"[{name}] ordinary acks: {len(values)}, p50 ms: {statistics.median(values) * 1000:.1f}, "
                      f"p99 ms: {percentile(values, 0.99) * 1000:.1f}, max ms: {max(values) * 1000:.1f}, "
                      f"daphne CPU % of a core: {100 * sum(cpu.servers) / cpu.wall:.0f}, load generator: "
                      f"{100 * cpu.generator / cpu.wall:.0f}, machine % of {cpu.cores} cores: "
                      f"{100 * cpu.machine / cpu.wall / cpu.cores:.0f}")  # fmt: skip
            ratio = percentile(during, 0.99) / percentile(before, 0.99)
            print(f"ordinary ack p99, abused / quiet: {ratio:.2f} ({'under' if ratio < 2 else 'NOT under'} 2x)")
            sent = tally.pop("frames sent", 0)
            print(f"abuser sockets: {tally.pop('accepted', 0)} accepted, "
                  + ", ".join(f"{v} {k}" for k, v in sorted(tally.items()) if k.startswith("refused")))  # fmt: skip
            answered = {k: v for k, v in tally.items() if not k.startswith("refused")}
            print(f"abuser frames: {sent} sent; replies: " + ", ".join(f"{v} {k}" for k, v in sorted(answered.items())))
    finally:
        if args.keep:
            print(f"# kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

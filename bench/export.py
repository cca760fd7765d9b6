"""
export_sessions (jsonl) against Django's `dumpdata conversations`, on generated SQLite databases.

    .venv/bin/python bench/export.py                      # 1x and 10x of the default size
    .venv/bin/python bench/export.py --scale 1            # 1x only
    .venv/bin/python bench/export.py --conversations 2000 --utterances-per 10 --scale 1 3

For each scale it builds (or reuses, with --reuse) a database of N conversations with
`--utterances-per` utterances and half as many response usages each (no journal rows, so both
commands write the same rows), then runs each command in its own process, one after the other,
writing to a file beside the database. Each process's peak memory is its own maximum resident
set size and its time its CPU time (user + system), both from os.wait4: the machines are shared,
and the wall clock, printed too, measures the neighbours as much as the command. One figure per line; the targets are export at
most a third of dumpdata's time, and export's peak memory at the largest scale within 1.2x of
the smallest.
"""

import argparse
import datetime
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
USERS = 200
WORDS = (  # noqa: SIM905 - shorter to read than a list literal
    "the a to and of I you it is that in we for on can with this what be have how about "
    "would like tomorrow weather train ticket recipe dinner meeting flight book remind please "
    "sure here are three options first second finally let me check again thanks great"
).split()


def django_env(database: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_", "REDIS_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="voiceproject.settings",
        DATABASE_URL=f"sqlite:///{database}",
        SECRET_KEY="bench-only-secret-key-0123456789-0123456789-0123456789",
        DEBUG="false",
    )
    return env


# --- Generating a database (runs in a child process: Django is set up for that file) ---------
def sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choices(WORDS, k=words)).capitalize() + "."


def generate(conversations: int, utterances_per: int, seed: int = 7):
    sys.path.insert(0, str(ROOT))  # this script lives in bench/, the project one level up
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.db import connection, transaction

    from conversations.models import Conversation, ResponseUsage, Utterance

    with connection.cursor() as cursor:  # a throwaway file: durability is not wanted here
        cursor.execute("PRAGMA synchronous=OFF")
    rng = random.Random(seed)
    users = User.objects.bulk_create(User(username=f"user{i}", password="!") for i in range(USERS))
    start = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
    batch = 2000
    for first in range(0, conversations, batch):
        with transaction.atomic():
            rows = []
            for n in range(first, min(first + batch, conversations)):
                at = start + datetime.timedelta(minutes=7 * n)
                rows.append(
                    Conversation(
                        user=users[n % USERS],
                        title=sentence(rng, 4),
                        model="gpt-realtime-2.1",
                        voice="marin",
                        status="ended",
                        segments=1,
                        created_at=at,
                        started_at=at,
                        last_activity_at=at + datetime.timedelta(minutes=5),
                        ended_at=at + datetime.timedelta(minutes=5),
                        input_tokens=rng.randrange(5000),
                        output_tokens=rng.randrange(5000),
                        transcription_tokens=rng.randrange(500),
                    )
                )
            rows = Conversation.objects.bulk_create(rows)
            utterances, usages = [], []
            for conversation in rows:
                for position in range(utterances_per):
                    assistant = position % 2 == 1
                    response_id = f"resp_{conversation.pk}_{position}" if assistant else ""
                    at = conversation.created_at + datetime.timedelta(seconds=10 * position)
                    utterances.append(
                        Utterance(
                            conversation=conversation,
                            item_id=f"item_{conversation.pk}_{position}",
                            role="assistant" if assistant else "user",
                            text=sentence(rng, 30 if assistant else 10),
                            status="completed",
                            response_id=response_id,
                            position=position,
                            created_at=at,
                            completed_at=at + datetime.timedelta(seconds=2),
                        )
                    )
                    if assistant:
                        usages.append(
                            ResponseUsage(
                                conversation=conversation,
                                response_id=response_id,
                                status="completed",
                                input_tokens=rng.randrange(2000),
                                output_tokens=rng.randrange(2000),
                                created_at=at,
                            )
                        )
            Utterance.objects.bulk_create(utterances, batch_size=5000)
            ResponseUsage.objects.bulk_create(usages, batch_size=5000)


def build(database: Path, conversations: int, utterances_per: int) -> float:
    started = time.monotonic()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    env = django_env(database)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    subprocess.run(
        [sys.executable, __file__, "--generate", str(conversations), str(utterances_per)],
        cwd=ROOT,
        env=env,
        check=True,
    )
    return time.monotonic() - started


# --- Measuring ------------------------------------------------------------------------------
def measure(args: list[str], env: dict) -> tuple[float, float, float]:
    """Wall time (s), CPU time (s, user + system) and peak resident memory (MB) of one child."""
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    errors = process.stderr.read().decode(errors="replace")
    process.stderr.close()
    if process.returncode:
        sys.exit(f"{' '.join(args)} failed ({process.returncode}):\n{errors}")
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024  # KB on Linux


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=20_000, help="at scale 1 (default 20000)")
    parser.add_argument("--utterances-per", type=int, default=20, help="per conversation (default 20)")
    parser.add_argument("--scale", type=int, nargs="+", default=[1, 10], help="sizes to run (default 1 10)")
    parser.add_argument(
        "--dir", type=Path, default=Path("/tmp/voiceproject-bench"), help="where the databases go"
    )
    parser.add_argument(
        "--reuse", action="store_true", help="reuse a database already generated at that size"
    )
    parser.add_argument("--generate", nargs=2, type=int, help=argparse.SUPPRESS)  # the child's job
    options = parser.parse_args()
    if options.generate:
        generate(*options.generate)
        return

    options.dir.mkdir(parents=True, exist_ok=True)
    peaks = {}
    for scale in options.scale:
        conversations = options.conversations * scale
        per = options.utterances_per
        utterances, usages = conversations * per, conversations * (per // 2)
        rows = conversations + utterances + usages
        database = options.dir / f"bench-{conversations}x{per}.sqlite3"
        tag = f"{scale}x"
        if options.reuse and database.exists():
            print(f"database {tag}: reused {database}", flush=True)
        else:
            print(f"database {tag}: generated in {build(database, conversations, per):.1f} s", flush=True)
        print(
            f"size {tag}: {conversations} conversations, {utterances} utterances, {usages} usages = {rows} rows",
            flush=True,
        )
        env = django_env(database)
        export_out, dump_out = options.dir / f"export-{tag}.jsonl", options.dir / f"dumpdata-{tag}.json"
        export_wall, export_cpu, export_peak = measure(
            ["export_sessions", "-o", str(export_out), "--force"], env
        )
        dump_wall, dump_cpu, dump_peak = measure(["dumpdata", "conversations", "-o", str(dump_out)], env)
        peaks[scale] = (export_peak, dump_peak)
        mb = 1024 * 1024
        for name, wall, cpu, peak, out in (
            ("export_sessions jsonl", export_wall, export_cpu, export_peak, export_out),
            ("dumpdata conversations", dump_wall, dump_cpu, dump_peak, dump_out),
        ):
            print(
                f"{name} {tag}: {wall:.1f} s wall, {cpu:.1f} s CPU, {rows / cpu:,.0f} rows/s of CPU, "
                f"peak {peak:.0f} MB, {out.stat().st_size / mb:.0f} MB written",
                flush=True,
            )
        print(
            f"time ratio export/dumpdata {tag}: {export_cpu / dump_cpu:.2f} CPU (target <= 0.33), "
            f"{export_wall / dump_wall:.2f} wall",
            flush=True,
        )
        export_out.unlink()
        dump_out.unlink()
    if len(peaks) > 1:
        low, high = min(peaks), max(peaks)
        for index, name in enumerate(("export_sessions", "dumpdata")):
            ratio = peaks[high][index] / peaks[low][index]
            target = " (target <= 1.2)" if index == 0 else ""
            print(f"peak memory {name} {high}x/{low}x: {ratio:.2f}{target}", flush=True)


if __name__ == "__main__":
    main()

"""
What the daily budget check adds to issuing a key (POST /api/realtime/sessions).

One signed-in user with a month of usage behind them (--days days of --per-day conversations of
--responses responses each: 4 500 ResponseUsage rows by default, 150 of them in the last 24
hours). In one run, iterations alternate (ABBA) between:
  off: USER_DAILY_BUDGET_USD=0 — no budget, so no check at all;
  on:  the default budget ($5), which the history stays under: the limit, the spend over 24
       hours, the live holds and the new hold, in one transaction with the user's row locked
       (conversations/budget.py).
Each key's hold is released between iterations (not timed), as a session's end would.

    .venv/bin/python bench/budget.py [--keys 300] [--database-url postgres://…/db]

Prints the median per key of each, their difference and their ratio. Starts its own stand-in;
the database is a throw-away SQLite file unless --database-url names a PostgreSQL server (a
database `bench_budget_<pid>_<random>` is created there and dropped afterwards). Rate limits are raised
out of the way (key_issuance.py's set-up).
"""

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from contextlib import ExitStack

from db_pool import fresh_postgres_database
from key_issuance import STANDIN_KEY, configure_environment, free_port, percentile, prepare_database, wait_for_port

ROOT = Path(__file__).resolve().parent.parent


def seed_history(days: int, per_day: int, responses: int) -> int:
    """The bench user's past: conversations spread over `days`, each with `responses` usage rows."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from conversations.models import Conversation, ResponseUsage

    user = get_user_model().objects.get(username="bench")
    now = timezone.now()
    rows = []
    for day in range(days):
        for n in range(per_day):
            at = now - timedelta(days=day, minutes=30 + n * 60 // max(per_day, 1))
            conversation = Conversation.objects.create(
                user=user, model="gpt-realtime-2.1", voice="marin", status="ended", segments=1,
                created_at=at, started_at=at, last_activity_at=at + timedelta(minutes=5), ended_at=at,
            )  # fmt: skip
            for r in range(responses):
                rows.append(ResponseUsage(
                    conversation=conversation, response_id=f"resp_{r}", status="completed", source="server",
                    created_at=at + timedelta(seconds=10 * r), input_tokens=900, input_text_tokens=300,
                    input_audio_tokens=600, cached_tokens=200, output_tokens=120, output_text_tokens=30,
                    output_audio_tokens=90,
                ))  # fmt: skip
    ResponseUsage.objects.bulk_create(rows, batch_size=1000)
    return len(rows)


async def run(args) -> None:
    import httpx
    from asgiref.sync import sync_to_async
    from django.conf import settings

    from conversations.models import BudgetHold
    from voiceproject.asgi import application

    transport = httpx.ASGITransport(application, client=("127.0.0.1", 50000))
    auth = args.auth
    client = httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", cookies=auth["cookies"],
                               headers=auth["headers"])  # fmt: skip
    clear_holds = sync_to_async(lambda: BudgetHold.objects.all().delete())

    async def one(limit: str) -> float:
        settings.USER_DAILY_BUDGET_USD = limit
        started = time.perf_counter()
        response = await client.post("/api/realtime/sessions", content=b"{}")
        elapsed = time.perf_counter() - started
        assert response.status_code == 201, response.text
        await clear_holds()
        return elapsed

    for _ in range(args.warmup):
        await one("0")
        await one(args.limit)
    off, on = [], []
    for i in range(args.keys):
        order = (("0", off), (args.limit, on)) if i % 4 in (0, 3) else ((args.limit, on), ("0", off))
        for limit, series in order:
            series.append(await one(limit))
    await client.aclose()

    ms = lambda seconds: seconds * 1000  # noqa: E731
    print(f"database: {args.vendor}; keys per series: {args.keys}; usage rows: {args.rows} "
          f"({args.recent} in the last 24 hours: ${args.spent:.2f})")  # fmt: skip
    print(f"no budget (USER_DAILY_BUDGET_USD=0), median per key: {ms(statistics.median(off)):.2f} ms")
    print(f"with the budget check and hold, median per key: {ms(statistics.median(on)):.2f} ms")
    added = ms(statistics.median(on) - statistics.median(off))
    print(f"budget check, added per key (difference of medians): {added:.2f} ms")
    print(f"with / without, ratio of medians: {statistics.median(on) / statistics.median(off):.2f}")
    print(f"of which spend.spent() alone (read and price 24 hours of usage), median: "
          f"{ms(statistics.median(args.ledger)):.2f} ms")
    print(f"p99 without / with: {ms(percentile(off, 99)):.2f} ms / {ms(percentile(on, 99)):.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=300, help="keys per series (default %(default)s)")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--per-day", type=int, default=10, help="conversations a day (default %(default)s)")
    parser.add_argument("--responses", type=int, default=15, help="responses a conversation (default %(default)s)")
    parser.add_argument("--database-url", help="a PostgreSQL server to create a throw-away database on")
    args = parser.parse_args()

    children = []
    # Undone in reverse: the database (after the children below are stopped), then the folder.
    with tempfile.TemporaryDirectory(prefix="bench-budget-") as workdir, ExitStack() as stack:
        try:
            port = free_port()
            standin = subprocess.Popen(
                [sys.executable, "-m", "tests.realtime_standin", "--port", str(port), "--api-key", STANDIN_KEY, "--quiet"],
                cwd=ROOT, stdout=subprocess.DEVNULL,
            )  # fmt: skip
            children.append(standin)
            wait_for_port(port, standin, "the stand-in")
            configure_environment(f"http://127.0.0.1:{port}/v1", workdir)
            os.environ["BUDGET_SESSION_RESERVE_USD"] = "0.50"
            if args.database_url:
                database = fresh_postgres_database(args.database_url, prefix="bench_budget")
                os.environ["DATABASE_URL"] = stack.enter_context(database)
            args.auth = prepare_database()
            from django.db import connection

            args.vendor = connection.vendor
            args.rows = seed_history(args.days, args.per_day, args.responses)
            from django.contrib.auth import get_user_model

            args.user_id = get_user_model().objects.get(username="bench").pk
            from conversations import spend

            recent = spend.spent(args.user_id)
            args.recent, args.spent = len(recent.charges), recent.total
            # The part of the check that reads and prices the history, alone (no request around it).
            args.ledger = []
            for _ in range(args.keys):
                started = time.perf_counter()
                spend.spent(args.user_id)
                args.ledger.append(time.perf_counter() - started)
            args.limit = "5"  # the default budget; the history stays under it: every key is checked, held
            asyncio.run(run(args))
        finally:
            for child in reversed(children):
                child.terminate()
                child.wait(10)


if __name__ == "__main__":
    main()

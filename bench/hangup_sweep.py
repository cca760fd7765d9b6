"""
What the session-cap sweep adds to a witness supervisor's round.

Each round of every process's supervisor already runs the lease scan (`leases.candidates`: live
calls nobody witnesses); the sweep adds one query (`hangup.overdue`: live calls past
REALTIME_MAX_SESSION_SECONDS not yet hung up). This fills a throw-away database with a history of
calls (most over, some live, a few past the cap), then times both queries in one run, alternating
so the machine's noise hits both alike, and prints the query plan of the sweep.

    .venv/bin/python bench/hangup_sweep.py [--calls 200000] [--rounds 2000] [--database-url URL]

Default database: a throw-away SQLite file. With --database-url (PostgreSQL) the tables are
created there by migrate, filled and left for a rerun: use a database of its own.
"""

import argparse
import statistics
import tempfile
import time
from datetime import timedelta

from django_setup import setup_django


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="bench-sweep-")
    setup_django(args.database_url or f"sqlite:///{workdir}/bench.sqlite3")
    from django.contrib.auth.models import User
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from conversations.models import Conversation, RealtimeCall
    from conversations.witness import hangup, leases

    now = timezone.now()
    if not RealtimeCall.objects.exists():
        user = User.objects.create(username="bench", password="!")
        conversations = Conversation.objects.bulk_create(
            Conversation(user=user, model="gpt-realtime-2.1", voice="marin", status="ended", ended_at=now)
            for _ in range(1000)
        )
        live = Conversation.objects.create(user=user, model="gpt-realtime-2.1", voice="marin")
        with transaction.atomic():
            batch = []
            for n in range(args.calls):
                # 99 % over (a history), 0.9 % live and young, 0.1 % live and past the cap
                over, old = n % 100 != 0, n % 1000 == 0
                at = now - timedelta(seconds=(n % 3600) if not over else 86400 + n)
                batch.append(
                    RealtimeCall(
                        conversation=live if not over else conversations[n % 1000],
                        call_id=f"rtc_bench_{n}",
                        source="browser",
                        created_at=now - timedelta(seconds=1900) if old and not over else at,
                        ended_at=None if not over else at + timedelta(minutes=5),
                    )
                )
                if len(batch) == 5000:
                    RealtimeCall.objects.bulk_create(batch)
                    batch = []
            RealtimeCall.objects.bulk_create(batch)
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")
        else:
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")

    def timed(fn):
        started = time.perf_counter()
        fn()
        return (time.perf_counter() - started) * 1e6

    scan, sweep = [], []
    for _ in range(args.rounds):
        scan.append(timed(lambda: leases.candidates(limit=20)))
        sweep.append(timed(lambda: hangup.overdue(20)))
    with CaptureQueriesContext(connection) as queries:
        due = hangup.overdue(20)
    sql = queries.captured_queries[-1]["sql"]
    with connection.cursor() as cursor:
        cursor.execute(("EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN ") + sql)
        plan = [" ".join(str(c) for c in row) for row in cursor.fetchall()]

    print(f"database {connection.vendor}, calls {RealtimeCall.objects.count()}, due {len(due)}")
    print(f"sweep_queries_per_round {len(queries.captured_queries)}")
    print(f"lease_scan_median_us {statistics.median(scan):.0f}")
    print(f"sweep_median_us {statistics.median(sweep):.0f}")
    print(f"sweep_to_lease_scan_ratio {statistics.median(sweep) / statistics.median(scan):.2f}")
    print("sweep_plan " + " | ".join(plan))


if __name__ == "__main__":
    main()

"""
What `spend.spent()` (a user's spend over the last 24 hours, which the daily budget reads on every
key) costs for a user with many old conversations, against the same two queries without the
activity prune (every conversation of the user probed), in the same run.

    .venv/bin/python bench/spend.py                       # 0 and 20 000 old conversations
    .venv/bin/python bench/spend.py --old 0 5000 50000
    DATABASE_URL=postgres://…/<empty database> .venv/bin/python bench/spend.py

Builds a throw-away SQLite database (or uses DATABASE_URL, migrating it) with one user who has
`--old` conversations last active 60 days ago and 10 active now, each with 3 response usages and
3 transcription usages; the 60 recent rows are in the window. One figure per line, medians of
`--runs` calls; compare the ratios, not the times (the machines are shared).
"""

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from django_setup import setup_django


def populate(old: int):
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from conversations.models import Conversation, ResponseUsage, TranscriptionUsage

    user_model = get_user_model()
    user_model.objects.filter(username="bench-spender").delete()
    user = user_model.objects.create_user("bench-spender", password="x")
    now = timezone.now()
    long_ago = now - timedelta(days=60)
    Conversation.objects.bulk_create(
        [
            Conversation(
                user=user, model="gpt-realtime-2.1", voice="marin", created_at=at, last_activity_at=at
            )
            for at in [long_ago] * old + [now] * 10
        ],
        batch_size=2000,
    )
    conversations = list(Conversation.objects.filter(user=user).only("pk", "last_activity_at"))
    ResponseUsage.objects.bulk_create(
        [
            ResponseUsage(conversation=c, response_id=f"r{i}", input_tokens=100, output_tokens=50,
                          created_at=c.last_activity_at, source="server")
            for c in conversations for i in range(3)
        ],
        batch_size=5000,
    )  # fmt: skip
    TranscriptionUsage.objects.bulk_create(
        [
            TranscriptionUsage(conversation=c, item_id=f"u{i}", input_tokens=100, input_audio_tokens=100,
                               output_tokens=10, created_at=c.last_activity_at, source="server")
            for c in conversations for i in range(3)
        ],
        batch_size=5000,
    )  # fmt: skip
    return user, now


def median_ms(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def measure(old: int, runs: int):
    from django.db import connection
    from django.db.models import Q

    from conversations import spend
    from conversations.models import ResponseUsage, TokenUsage, TranscriptionUsage

    user, now = populate(old)
    since = now - spend.WINDOW

    def unpruned():  # the same two queries, without the activity prune
        window = Q(conversation__user_id__in=[user.pk], created_at__gte=since, created_at__lte=now)
        list(
            ResponseUsage.objects.filter(window)
            .order_by()
            .values(
                "conversation__user_id",
                "conversation__model",
                "created_at",
                "source",
                *TokenUsage.USAGE_FIELDS,
            )
        )
        list(TranscriptionUsage.objects.filter(window).order_by().values(
            "conversation__user_id", "created_at", "source", *TranscriptionUsage.USAGE_FIELDS))  # fmt: skip

    assert len(spend.spent(user.pk, now=now).charges) == 60
    total = median_ms(lambda: spend.spent(user.pk, now=now), runs)
    queries = median_ms(lambda: spend._charges([user.pk], since, now), runs)
    baseline = median_ms(unpruned, runs)
    print(f"{connection.vendor}, {old} old + 10 recent conversations (60 charges in the window):")
    print(f"  spent() median: {total:.2f} ms")
    print(f"  its two queries and pricing, median: {queries:.2f} ms")
    print(f"  the two queries without the activity prune (no pricing), median: {baseline:.2f} ms")
    print(f"  ratio unpruned / pruned: {baseline / queries:.1f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", type=int, nargs="+", default=[0, 20000])
    parser.add_argument("--runs", type=int, default=25)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        database_url = os.environ.get("DATABASE_URL") or f"sqlite:///{Path(tmp) / 'spend.sqlite3'}"
        setup_django(database_url, keep_redis=True)
        for old in args.old:
            measure(old, args.runs)


if __name__ == "__main__":
    main()

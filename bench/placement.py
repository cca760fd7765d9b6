"""
What placing lines by `previous_item_id` (conversations/transcript/order.py) costs the writer:
`journal.append_frames` of one conversation's events, in batches as the socket stores them, for
three streams in the same run, alternating:

- unlinked:     events without previous_item_id (what the writer did before links were kept:
                nothing is ever placed again, but the lookup of following lines still runs);
- linked:       the same events with OpenAI's links, in order (the common case: nothing moves);
- witness first: the witness stores the second half of the turns before the page delivers the
                whole stream (every line of that half is placed again once), against the same
                frames without links ("witness first, unlinked": what the writer did before, which
                left the second half first).

    .venv/bin/python bench/placement.py                   # SQLite, 40 turns, batches of 6
    .venv/bin/python bench/placement.py --turns 200 --batch 12
    .venv/bin/python bench/placement.py --database-url postgres://postgres@127.0.0.1:5432/<empty database>

One figure per line: the median time per batch and per whole conversation; compare the ratios,
not the times (the machines are shared).
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from django_setup import setup_django


def streams(turns: int):
    from conversations.transcript.frames import Frame
    from tests.support.events import linked, turn_events

    plain = turn_events(turns)
    links = linked(plain)
    half = len(links) // 2

    def browser(events):
        return [Frame("event", seq, e) for seq, e in enumerate(events, start=1)]

    def witness(events):
        return [Frame("event", seq, e, source="server") for seq, e in enumerate(events[half:], start=1)]

    return {
        "unlinked": browser(plain),
        "linked": browser(links),
        "witness first, unlinked": witness(plain) + browser(plain),
        "witness first": witness(links) + browser(links),  # last: the order is checked on it
    }


def run(frames, batch: int, user) -> tuple[list[float], float]:
    from conversations.transcript import journal
    from tests.support.factories import make_conversation

    conversation = make_conversation(user)
    times = []
    for start in range(0, len(frames), batch):
        began = time.perf_counter()
        journal.append_frames(conversation.pk, frames[start : start + batch])
        times.append(time.perf_counter() - began)
    return times, sum(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--turns", type=int, default=40, help="turns per conversation (6 events each)")
    parser.add_argument("--batch", type=int, default=6, help="events per append (a socket batch)")
    parser.add_argument("--rounds", type=int, default=15, help="conversations per stream")
    parser.add_argument("--database-url", help="an empty database to migrate and use (default: a SQLite file)")
    args = parser.parse_args()
    if args.turns < 2 or args.batch < 1 or args.rounds < 1:
        parser.error("--turns must be at least 2, --batch and --rounds at least 1")
    folder = tempfile.mkdtemp(prefix="bench-placement-")
    setup_django(args.database_url or f"sqlite:///{Path(folder) / 'bench.sqlite3'}", DEBUG="true")
    from django.db import connection

    from conversations.models import Utterance
    from tests.support.factories import make_user

    user = make_user("bench-placement")
    per_batch = {name: [] for name in streams(args.turns)}
    per_conversation = {name: [] for name in per_batch}
    for _ in range(args.rounds):
        for name, frames in streams(args.turns).items():  # alternating: the machine's drift hits all three
            times, total = run(frames, args.batch, user)
            per_batch[name] += times
            per_conversation[name].append(total)
    last = Utterance.objects.filter(conversation__user=user).latest("conversation_id").conversation_id
    placed = list(Utterance.objects.filter(conversation=last).order_by("position").values_list("item_id", flat=True))
    assert placed == [f"{k}{t}" for t in range(args.turns) for k in "ua"], "the witness-first stream was misplaced"
    print(f"database: {connection.vendor}; {args.turns} turns, {6 * args.turns} events, batches of {args.batch}, "
          f"{args.rounds} conversations per stream")  # fmt: skip
    for name in per_batch:
        base = "witness first, unlinked" if "first" in name else "unlinked"
        batch_ms = statistics.median(per_batch[name]) * 1000
        conversation_ms = statistics.median(per_conversation[name]) * 1000
        batch_ratio = batch_ms / 1000 / statistics.median(per_batch[base])
        conversation_ratio = conversation_ms / 1000 / statistics.median(per_conversation[base])
        print(f"{name:>23}: median per batch {batch_ms:7.2f} ms (x{batch_ratio:.2f}); "
              f"per conversation {conversation_ms:8.1f} ms (x{conversation_ratio:.2f} against {base})")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())

"""
Where each line of a transcript goes: OpenAI's conversation order.

Every item OpenAI adds to a conversation names the item it was placed after (`previous_item_id`
of `conversation.item.added` and `input_audio_buffer.committed`; null for the first). Within one
stream that is nearly always the item before it, so the order in which items first appear is
right. It is not when two streams interleave: the server's witness, attached late, can store
turn 2 while the page's outbox is still delivering turn 1. The links put it right:

- a line goes right after the line it follows, with what follows it in turn;
- lines that follow the same line keep the order in which they first appeared (that is when
  they were said; OpenAI would put the later one first, but a transcript is a record);
- a line that follows nothing known (the first line of a session, a line after a function call,
  or after an item neither stream saw) keeps its place among such lines;
- links that go round in a circle (only a forged stream makes them) leave those lines where they
  were, at the end.

The result depends only on the lines and the positions they hold, and placing lines already in
place moves nothing. So placing after each batch of events (the journal) and once after all of
them (a rebuild) agree: tests/test_order.py checks it on random streams cut into random batches.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Mapping
from typing import Protocol, TypeVar


class Line(Protocol):
    item_id: str
    position: int
    previous_item_id: str


def placement(lines: Iterable[Line]) -> dict[str, int]:
    """{item_id: position} for every line: the same positions the lines hold, in transcript order."""
    lines = sorted(lines, key=lambda u: u.position)
    known = {u.item_id for u in lines}
    roots: list[str] = []
    followers: dict[str, list[str]] = {}
    for u in lines:
        after = u.previous_item_id
        if after in known and after != u.item_id:
            followers.setdefault(after, []).append(u.item_id)
        else:
            roots.append(u.item_id)
    ordered: list[str] = []
    stack = roots[::-1]
    while stack:  # depth first, without recursion: a forged chain can be as long as the transcript
        item_id = stack.pop()
        ordered.append(item_id)
        stack += followers.get(item_id, ())[::-1]
    if len(ordered) < len(lines):  # lines in a circle of links, and what follows them
        placed = set(ordered)
        ordered += [u.item_id for u in lines if u.item_id not in placed]
    return dict(zip(ordered, (u.position for u in lines)))


L = TypeVar("L")


def placed(lines: Mapping[str, L]) -> dict[str, L]:
    """The lines (frozen dataclasses, by item_id) with their positions in transcript order."""
    positions = placement(lines.values())
    return {i: u if u.position == positions[i] else dataclasses.replace(u, position=positions[i])
            for i, u in lines.items()}  # fmt: skip


def misplaced(lines: Mapping[str, Line], changed: Collection[str], created: Collection[str]) -> bool:
    """Might placing move a line, after the lines `changed` (their links included) and `created`?

    `lines`: the lines known, by item_id, as they are now (the new ones at the end, in the order
    they appeared) — at least those changed, the ones they follow, and the ones that follow the
    created ones. False means all is in place; True that `placement` over the whole transcript
    must decide (it is rare: only when a line's predecessor is not the line before it).
    """
    for item_id in changed:
        u = lines[item_id]
        before = lines.get(u.previous_item_id)
        if before is not None and before.item_id != item_id and before.position != u.position - 1:
            return True
    # A line stored earlier that follows a line only now created: it is ahead of it.
    return any(u.previous_item_id in created and u.item_id not in created for u in lines.values())

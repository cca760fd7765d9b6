"""
Files and rows of recordings that lost each other: what `manage.py clean_recordings` reports.

- An **orphan** is a file with no `RecordingChunk` row: a file delete that failed after its rows
  were deleted, or an upload whose process died between writing the file and committing the row.
  Files younger than `min_age` are left alone: an upload in flight writes its file before its row.
- A **missing** file is a row whose file is not there (lost outside the application): reported,
  since deleting the row would silently shorten a recording.

The storage is walked one conversation folder at a time, and each folder is compared with that
conversation's rows only: memory holds one conversation's names (and one id per folder seen),
whatever the size of the store.
"""

import uuid as uuid_module
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from conversations.models import Recording, RecordingChunk
from conversations.recordings import store


@dataclass(frozen=True)
class Finding:
    kind: str  # "orphan" | "recent" (an orphan younger than min_age, left alone) | "missing"
    name: str  # the storage name
    size: int | None = None  # of a file found


def _conversation_uuid(folder: str) -> uuid_module.UUID | None:
    try:
        return uuid_module.UUID(folder)
    except ValueError:
        return None


def _file_size(name: str) -> int | None:
    try:
        return store.storage().size(name)
    except (OSError, NotImplementedError):
        return None


def _is_recent(name: str, cutoff: datetime) -> bool:
    try:
        return store.storage().get_modified_time(name) > cutoff
    except (OSError, NotImplementedError):
        return True  # unknown age: not deleted


def find(*, min_age: timedelta, now: datetime | None = None) -> Iterator[Finding]:
    """Every orphaned file and every row whose file is missing."""
    cutoff = (now or timezone.now()) - min_age
    files = store.storage()
    try:
        folders, loose = files.listdir("")
    except FileNotFoundError:
        folders, loose = [], []
    for name in loose:  # nothing is ever written at the top
        yield _orphan(name, cutoff)
    seen = set()
    for folder in sorted(folders):
        conversation = _conversation_uuid(folder)
        if conversation is not None:
            seen.add(conversation)
        names = set(
            RecordingChunk.objects.filter(recording__conversation__uuid=conversation).values_list("name", flat=True)
            if conversation is not None
            else ()
        )
        present = set()
        for name in store.walk(folder):
            present.add(name)
            if name not in names:
                yield _orphan(name, cutoff)
        for name in sorted(names - present):
            yield Finding("missing", name)
    # Conversations with rows and no folder at all. Compared here rather than with
    # `exclude(uuid__in=seen)`: one query parameter per folder would exceed the database's limit
    # (SQLite 32 766, PostgreSQL 65 535) on a large store.
    with_rows = Recording.objects.values_list("conversation__uuid", flat=True).distinct()
    for conversation in with_rows.iterator():
        if conversation in seen:
            continue
        for name in RecordingChunk.objects.filter(recording__conversation__uuid=conversation).values_list(
            "name", flat=True
        ):
            yield Finding("missing", name)


def _orphan(name: str, cutoff: datetime) -> Finding:
    return Finding("recent" if _is_recent(name, cutoff) else "orphan", name, _file_size(name))

"""
Restoring conversations from a JSON Lines export (`export_sessions --format jsonl`).

Two passes over the file, neither holding more than a batch of records:
1. `check_file()` validates every record (JSON, schema, every field against the models, users
   that exist) and stops at the first broken line — so a broken file imports nothing;
2. `import_file()` checks the file the same way and then writes it batch by batch, each batch in
   one short transaction (under SQLite the live app's writers get their turn between batches).
   A conversation whose uuid is already stored is skipped, so importing twice creates nothing
   new, and an interrupted import is finished by running it again.
"""

import gzip
import itertools
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from django.contrib.auth import get_user_model
from django.db import DatabaseError, transaction

from conversations.export.records import ParsedConversation, RecordError, parse_record
from conversations.models import Conversation, Event, ResponseUsage, TranscriptionUsage, Utterance

BATCH_SIZE = 200
GZIP_MAGIC = b"\x1f\x8b"


class ImportWriteError(Exception):
    """The database refused a batch that passed the checks; the batches before it are stored."""


class ImportFileError(ValueError):
    """The file cannot be imported; `line` is where (None for the file as a whole)."""

    def __init__(self, message: str, line: int | None = None):
        self.line = line
        super().__init__(f"line {line}: {message}" if line else message)


@dataclass
class ImportReport:
    conversations: int = 0  # written
    skipped: int = 0  # already stored (same uuid)
    utterances: int = 0
    usages: int = 0
    events: int = 0


def _open(path: Path):
    try:
        handle = open(path, "rb")  # noqa: SIM115 - the caller's `with` closes it
        if handle.read(2) == GZIP_MAGIC:
            handle.seek(0)
            return gzip.GzipFile(fileobj=handle)
        handle.seek(0)
        return handle
    except FileNotFoundError:
        raise ImportFileError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise ImportFileError(f"{path} is a directory") from None
    except OSError as error:
        raise ImportFileError(f"cannot read {path}: {error.strerror}") from None


def read_records(path: Path) -> Iterator[tuple[int, object]]:
    """(line number, decoded JSON) for each non-blank line of a jsonl file, gzipped or not."""
    line = 0
    with _open(path) as handle:
        try:
            for line, raw in enumerate(handle, 1):
                if not raw.strip():
                    continue
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise ImportFileError("not UTF-8 text", line) from None
                try:
                    record = json.loads(text)
                except json.JSONDecodeError as error:
                    hint = ""
                    if line == 1 and text.lstrip().startswith("["):
                        hint = "; this looks like --format json, import reads --format jsonl"
                    elif not raw.endswith(b"\n"):
                        hint = "; the file looks truncated"
                    raise ImportFileError(
                        f"not valid JSON ({error.msg}, column {error.colno}){hint}", line
                    ) from None
                yield line, record
        except (EOFError, gzip.BadGzipFile, zlib.error) as error:
            raise ImportFileError(f"the gzip data is truncated or corrupt ({error})", line + 1) from None


def _usernames(record) -> list:
    if not isinstance(record, dict):
        return []
    names = [record.get("user")]
    if isinstance(record.get("review"), dict):
        names.append(record["review"].get("reviewed_by"))
    return [name for name in names if isinstance(name, str)]


class _Users:
    """Usernames to users, looked up one query per batch of records and remembered."""

    def __init__(self):
        self.known: dict[str, object] = {}
        self._asked: set[str] = set()

    def load(self, names):
        names = set(names) - self._asked
        if names:
            User = get_user_model()
            for user in User.objects.filter(**{f"{User.USERNAME_FIELD}__in": names}):
                self.known[user.get_username()] = user
            self._asked |= names


def _batches(path: Path, users: _Users) -> Iterator[list[tuple[int, dict]]]:
    records = read_records(path)
    while batch := list(itertools.islice(records, BATCH_SIZE)):
        users.load(name for _, record in batch for name in _usernames(record))
        yield batch


def _parse(line: int, record, users: _Users) -> ParsedConversation:
    try:
        return parse_record(record, users.known)
    except RecordError as error:
        raise ImportFileError(str(error), line) from None


def check_file(path, users: _Users | None = None) -> int:
    """Validate the whole file; returns its number of records. Raises ImportFileError."""
    path, users = Path(path), users or _Users()
    unknown: dict[str, int] = {}
    count = 0
    for batch in _batches(path, users):
        for line, record in batch:
            missing = [name for name in _usernames(record) if name not in users.known]
            if missing:  # gathered, to name them all at once
                for name in missing:
                    unknown.setdefault(name, line)
                continue
            _parse(line, record, users)
            count += 1
    if unknown:
        listed = ", ".join(
            f"{name!r} (line {line})" for name, line in sorted(unknown.items(), key=lambda i: i[1])
        )
        raise ImportFileError(f"unknown user(s): {listed}; create them first")
    return count


def _unstored(parsed: list[ParsedConversation], report: ImportReport) -> list[ParsedConversation]:
    """The conversations of a batch whose uuid is not stored yet; counts the others as skipped."""
    stored = set(
        Conversation.objects.filter(uuid__in=[p.conversation.uuid for p in parsed]).values_list(
            "uuid", flat=True
        )
    )
    new = []
    for item in parsed:
        if item.conversation.uuid in stored:
            report.skipped += 1
            continue
        stored.add(item.conversation.uuid)  # a uuid twice in the file: the first one wins
        new.append(item)
    return new


def _write(new: list[ParsedConversation], report: ImportReport, *, dry_run: bool):
    children = {Utterance: [], ResponseUsage: [], TranscriptionUsage: [], Event: []}
    if not dry_run:
        Conversation.objects.bulk_create([item.conversation for item in new])
    for item in new:
        for child in itertools.chain(item.utterances, item.usages, item.transcriptions, item.events or ()):
            # After bulk_create(): the conversation has its primary key now.
            child.conversation = item.conversation
            children[type(child)].append(child)
    if not dry_run:
        for model, rows in children.items():
            model.objects.bulk_create(rows, batch_size=1000)
    report.conversations += len(new)
    report.utterances += len(children[Utterance])
    report.usages += len(children[ResponseUsage])
    report.events += len(children[Event])


def import_file(path, *, dry_run: bool = False) -> ImportReport:
    """
    Restore the conversations of an export file for the users of the same usernames. Validates
    the whole file first (ImportFileError names the first broken line; nothing is written), then
    writes it in batches. `dry_run` stops short of writing and reports what would be written.
    """
    path, users = Path(path), _Users()
    check_file(path, users)
    report = ImportReport()
    for batch in _batches(path, users):
        parsed = [_parse(line, record, users) for line, record in batch]
        if dry_run:
            _write(_unstored(parsed, report), report, dry_run=True)
            continue
        try:
            with transaction.atomic():
                _write(_unstored(parsed, report), report, dry_run=False)
        except DatabaseError as error:
            raise ImportWriteError(
                f"lines {batch[0][0]}-{batch[-1][0]} could not be stored ({error}); the "
                f"{report.conversations} conversations before them were. Fix the file and run "
                "the import again: what is stored already is skipped"
            ) from error
    return report

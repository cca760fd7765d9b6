"""
The stored audio of conversations: chunks in, byte ranges out, files removed with their rows.

A storage cannot append, so every uploaded chunk is a file of its own in STORAGES["recordings"]
(`<conversation uuid>/<segment>/<index:06d>-<token>.<ext>`) and a `RecordingChunk` row names it;
a recording is its chunks concatenated in index order. The random token makes each upload
attempt's file unique: two uploads of one index never write the same file (S3 overwrites), and
an upload that is refused removes only what it wrote itself.

Order of writes: the file first, then the rows in one transaction that locks the conversation
(so that the per-conversation total and the next index cannot race), and the file is removed
again if the transaction does not commit. A process that dies between the two leaves a file with
no row: `manage.py clean_recordings` finds and removes it. Rows are deleted first and their files
after the deletion committed; a file that cannot be deleted then is logged and left for the same
command. So a row never points at a file that was deliberately removed.
"""

import hashlib
import logging
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from accounts import consent
from conversations.models import Conversation, Recording, RecordingChunk
from conversations.transcript import journal

log = logging.getLogger(__name__)

# The containers MediaRecorder produces, by the Content-Type of their chunks, with the extension
# their files get and the magic bytes a stream of them starts with (checked on chunk 0).
EXTENSIONS = {"audio/webm": "webm", "audio/ogg": "ogg", "audio/mp4": "m4a"}
MAX_MIME_TYPE_CHARS = 100
# Bounds of what a chunk's address and header may say (far above any real recording).
MAX_SEGMENT = 100_000
MAX_INDEX = 1_000_000
MAX_DURATION_MS = 7 * 24 * 3600 * 1000
READ_BLOCK = 64 * 1024


def storage():
    return storages["recordings"]


# --- Refusals ------------------------------------------------------------------------------------
class Refused(Exception):
    """An upload refused: nothing was stored. `status` and `code` are the API's answer."""

    status = 400
    code = "invalid_request"

    def __init__(self, message: str, **extra):
        super().__init__(message)
        self.extra = extra


class InvalidChunk(Refused):
    pass


class RecordingsDisabled(Refused):
    status, code = 403, "recordings_disabled"


class NotFound(Refused):
    status, code = 404, "not_found"


class ChunkConflict(Refused):
    status, code = 409, "chunk_conflict"


class OutOfOrder(Refused):
    status, code = 409, "out_of_order"


class ConversationClosed(Refused):
    status, code = 409, "conversation_closed"


class ChunkTooLarge(Refused):
    status, code = 413, "chunk_too_large"


class RecordingTooLarge(Refused):
    status, code = 413, "recording_too_large"


class NotAudio(Refused):
    status, code = 415, "not_audio"


# --- Checks of what a chunk is -------------------------------------------------------------------
def recordings_enabled() -> bool:
    # RECORDINGS (off | opt-in | on) is the consent setting of the voice page (accounts/consent.py);
    # only "off" concerns the upload: nothing is accepted then.
    return consent.mode() != consent.OFF


def mime_type(content_type: str | None) -> str:
    """The chunk's Content-Type, normalised ("audio/webm;codecs=opus"); NotAudio unless allowed."""
    text = (content_type or "").strip().lower()
    base = text.split(";", 1)[0].strip()
    if base not in EXTENSIONS or len(text) > MAX_MIME_TYPE_CHARS or not text.isascii() or not text.isprintable():
        raise NotAudio(
            f"Content-Type {content_type or '(none)'!r} is not a recording: send the recorder's "
            f"mimeType, one of {', '.join(EXTENSIONS)}."
        )
    parameters = [p.strip() for p in text.split(";")[1:] if p.strip()]
    return ";".join([base, *parameters])


def container(mime: str) -> str:
    return mime.split(";", 1)[0]


def starts_like(base: str, data: bytes) -> bool:
    """Whether `data` starts as a stream of this container does (its magic bytes)."""
    if base == "audio/webm":
        return data[:4] == b"\x1a\x45\xdf\xa3"  # EBML header (WebM, Matroska)
    if base == "audio/ogg":
        return data[:4] == b"OggS"
    if base == "audio/mp4":
        return data[4:8] == b"ftyp"
    return False


def extension(mime: str) -> str:
    return EXTENSIONS.get(container(mime), "bin")


def check_address(segment: int, index: int, duration_ms: int) -> None:
    if not 1 <= segment <= MAX_SEGMENT:
        raise InvalidChunk(f"The segment must be a whole number from 1 to {MAX_SEGMENT}.")
    if not 0 <= index <= MAX_INDEX:
        raise InvalidChunk(f"The chunk index must be a whole number from 0 to {MAX_INDEX}.")
    if not 0 <= duration_ms <= MAX_DURATION_MS:
        raise InvalidChunk(f"X-Recording-Duration-Ms must be a whole number of milliseconds from 0 to {MAX_DURATION_MS}.")


# --- Appending a chunk ---------------------------------------------------------------------------
def summary(recording: Recording | None, segment: int) -> dict:
    """What the server holds of a recording: the API's `recording` object."""
    if recording is None:
        return {"segment": segment, "chunks": 0, "bytes": 0, "duration_ms": 0}
    return {
        "segment": recording.segment,
        "chunks": recording.chunks,
        "bytes": recording.bytes,
        "duration_ms": recording.duration_ms,
    }


@dataclass
class Appended:
    recording: Recording
    created: bool  # False: this exact chunk was stored already (a resend changed nothing)

    @property
    def body(self) -> dict:
        return {"recording": summary(self.recording, self.recording.segment)}


@dataclass
class _Chunk:
    segment: int
    index: int
    data: bytes = field(repr=False)
    mime: str
    duration_ms: int
    sha256: str


def _total(recordings) -> int:
    return recordings.aggregate(total=Sum("bytes"))["total"] or 0


def _decide(conversation: dict, chunk: _Chunk, now: datetime) -> Recording | None:
    """
    The checks that depend on what is stored, in the order a client can act on them. Returns the
    recording when this exact chunk is stored already (a resend); raises a Refused otherwise, or
    returns None: the chunk may be stored.
    """
    if chunk.segment > conversation["segments"]:
        raise NotFound("This conversation has no such session.")
    recording = Recording.objects.filter(conversation_id=conversation["id"], segment=chunk.segment).first()
    if recording is not None:
        stored = recording.chunk_files.filter(index=chunk.index).values_list("sha256", flat=True).first()
        if stored == chunk.sha256:
            return recording  # checked before "closed": a resend after the end changes nothing either
        if stored is not None:
            raise ChunkConflict(f"Chunk {chunk.index} is stored already with other bytes.")
    if journal.is_closed(conversation, now):
        raise ConversationClosed(
            f"This conversation ended more than {settings.CONVERSATION_LATE_EVENTS_SECONDS} seconds ago; "
            "its recording is closed."
        )
    expected = recording.chunks if recording is not None else 0
    if chunk.index != expected:
        raise OutOfOrder(f"Expected chunk {expected}, not {chunk.index}.", expected=expected)
    if recording is not None and container(recording.mime_type) != container(chunk.mime):
        raise NotAudio(f"This recording is {container(recording.mime_type)}; every chunk must be.")
    if chunk.index == 0 and not starts_like(container(chunk.mime), chunk.data):
        raise NotAudio(f"The first chunk does not start as {container(chunk.mime)} audio does.")
    limit = settings.RECORDING_MAX_BYTES_PER_CONVERSATION
    if _total(Recording.objects.filter(conversation_id=conversation["id"])) + len(chunk.data) > limit:
        raise RecordingTooLarge(
            f"This conversation's recordings would exceed {limit} bytes; nothing more is stored."
        )
    # One user's audio, all conversations: a user may start many conversations (keys are limited
    # per day, not their audio), so the per-conversation bound alone would not bound them.
    limit = settings.RECORDING_MAX_BYTES_PER_USER
    if _total(Recording.objects.filter(conversation__user_id=conversation["user_id"])) + len(chunk.data) > limit:
        raise RecordingTooLarge(
            f"Your recordings would exceed {limit} bytes in all; delete some to record more."
        )
    return None


LOCK_FIELDS = ("id", "user_id", "segments", "status", "ended_at", "last_activity_at", "created_at")


def _locked_conversation(pk: int) -> dict:
    # SELECT … FOR UPDATE on PostgreSQL: the uploads of one conversation take turns here, so the
    # total and the next index are decided by one at a time (SQLite's IMMEDIATE transactions are
    # serialised already). The transcript's journal locks the same row the same way. Then the
    # owner's row, so that the uploads of all of a user's conversations take turns on the user's
    # total (always in this order: conversation, then user, so two uploads cannot deadlock;
    # nothing else locks a user row and then a conversation).
    row = Conversation.objects.select_for_update().filter(pk=pk).values(*LOCK_FIELDS).first()
    if row is None:
        raise NotFound("No such conversation.")  # deleted meanwhile
    get_user_model().objects.select_for_update().filter(pk=row["user_id"]).values_list("pk").first()
    return row


def append_chunk(
    conversation: Conversation,
    segment: int,
    index: int,
    data: bytes,
    content_type: str | None,
    duration_ms: int,
    *,
    now: datetime | None = None,
) -> Appended:
    """
    Store chunk `index` of recording `segment` of `conversation` (already checked to be the
    caller's). Idempotent: the same bytes again change nothing (`created` False). Raises a
    Refused subclass, having stored nothing, for anything else (see the API docs).
    """
    if not recordings_enabled():
        raise RecordingsDisabled("Recording audio is turned off on this site.")
    check_address(segment, index, duration_ms)
    if not data:
        raise InvalidChunk("The chunk is empty.")
    if len(data) > settings.RECORDING_MAX_CHUNK_BYTES:
        raise ChunkTooLarge(f"A chunk may hold at most {settings.RECORDING_MAX_CHUNK_BYTES} bytes.")
    chunk = _Chunk(segment, index, data, mime_type(content_type), duration_ms, hashlib.sha256(data).hexdigest())
    now = now or timezone.now()
    values = {name: getattr(conversation, name) for name in LOCK_FIELDS}
    # Checked first without a lock: the usual refusals (a resend, out of order) cost no write.
    stored = _decide(values, chunk, now)
    if stored is not None:
        return Appended(stored, created=False)

    files = storage()
    name = files.save(
        f"{conversation.uuid}/{segment}/{index:06d}-{secrets.token_hex(6)}.{extension(chunk.mime)}",
        ContentFile(data),
    )
    try:
        with transaction.atomic():
            stored = _decide(_locked_conversation(conversation.pk), chunk, now)
            if stored is not None:  # the same chunk, stored by a concurrent resend
                remove_files([name])
                return Appended(stored, created=False)
            recording = _save_rows(conversation.pk, chunk, name, now)
    except BaseException:
        remove_files([name])
        raise
    return Appended(recording, created=True)


def _save_rows(conversation_id: int, chunk: _Chunk, name: str, now: datetime) -> Recording:
    if chunk.index == 0:
        recording = Recording.objects.create(
            conversation_id=conversation_id,
            segment=chunk.segment,
            mime_type=chunk.mime,
            started_at=now - timedelta(milliseconds=chunk.duration_ms),
            updated_at=now,
        )
    else:
        recording = Recording.objects.get(conversation_id=conversation_id, segment=chunk.segment)
    RecordingChunk.objects.create(
        recording=recording, index=chunk.index, name=name, bytes=len(chunk.data), sha256=chunk.sha256, created_at=now
    )
    recording.chunks += 1
    recording.bytes += len(chunk.data)
    # Cumulative: a recorder's count only grows, but a late resend of an older one must not shrink it.
    recording.duration_ms = max(recording.duration_ms, chunk.duration_ms)
    recording.updated_at = now
    recording.save(update_fields=["chunks", "bytes", "duration_ms", "updated_at"])
    return recording


# --- Reading -------------------------------------------------------------------------------------
def chunk_files(recording: Recording) -> list[tuple[str, int]]:
    """(storage name, bytes) of each chunk, in order. The recording's size is their sum: read
    once, so that a chunk appended meanwhile cannot make the size and the list disagree."""
    return list(recording.chunk_files.order_by("index").values_list("name", "bytes"))


def read_range(chunks: list[tuple[str, int]], start: int, end: int) -> Iterator[bytes]:
    """The bytes from `start` to `end` (inclusive) of the chunks concatenated, in blocks."""
    files = storage()
    offset = 0
    for name, size in chunks:
        if offset + size <= start:
            offset += size
            continue
        if offset > end:
            return
        first, last = max(start - offset, 0), min(end - offset, size - 1)
        try:
            handle = files.open(name, "rb")
        except OSError:
            # Lost outside the application (clean_recordings reports it): the answer stops short,
            # and the client sees a response shorter than its Content-Length, not other bytes.
            log.error("Recording chunk %s is missing", name)
            return
        with handle:
            handle.seek(first)
            left = last - first + 1
            while left > 0:
                block = handle.read(min(READ_BLOCK, left))
                if not block:
                    log.error("Recording chunk %s is shorter than recorded", name)
                    return
                left -= len(block)
                yield block
        offset += size


# --- Deleting ------------------------------------------------------------------------------------
def remove_files(names: Iterable[str]) -> int:
    """Delete these files; one that cannot be is logged and left for clean_recordings. Returns
    how many could not be deleted."""
    files, failed = storage(), 0
    for name in names:
        try:
            files.delete(name)
        except Exception:  # any storage's error: the rows are gone, the file is an orphan now
            failed += 1
            log.warning("Could not delete recording file %s; clean_recordings will remove it", name, exc_info=True)
    return failed


def walk(prefix: str = "") -> Iterator[str]:
    """Every file name under `prefix` in the recordings storage (nothing when it does not exist)."""
    files = storage()
    try:
        folders, names = files.listdir(prefix)
    except FileNotFoundError:
        return
    for name in names:
        yield f"{prefix}/{name}" if prefix else name
    for folder in folders:
        yield from walk(f"{prefix}/{folder}" if prefix else folder)


def remove_conversation_files(conversation_uuids: Iterable) -> int:
    """Delete every file of these (deleted) conversations, and their empty folders."""
    failed = 0
    for uuid in conversation_uuids:
        failed += remove_files(list(walk(str(uuid))))
        _remove_empty_folders(str(uuid))
    return failed


def _remove_empty_folders(prefix: str) -> None:
    files = storage()
    if not hasattr(files, "path"):  # an object store has no folders
        return
    try:
        folders, _ = files.listdir(prefix)
        for folder in folders:
            _remove_empty_folders(f"{prefix}/{folder}")
        files.delete(prefix)  # FileSystemStorage removes an (empty) directory
    except OSError:
        pass  # not empty (an upload in flight), or gone: clean_recordings looks again


def delete_rows(conversation_ids: list[int], *, keep_conversations: bool = False) -> dict[str, int]:
    """
    Delete the recording rows of these conversations, in the caller's transaction, and their
    files once it commits. Returns the rows deleted per model label. Whole conversations being
    deleted lose their folder (nothing can be added to a deleted conversation); a conversation
    that stays (`keep_conversations`) loses exactly the files of the rows deleted, so that a
    chunk uploaded meanwhile keeps its file.
    """
    recordings = Recording.objects.filter(conversation_id__in=conversation_ids)
    uuids = list(
        Conversation.objects.filter(pk__in=recordings.values("conversation_id")).values_list("uuid", flat=True)
    )
    if not uuids:
        return {}
    chunks = RecordingChunk.objects.filter(recording__in=recordings.values("pk"))
    names = list(chunks.values_list("name", flat=True)) if keep_conversations else None
    counts = dict(chunks.delete()[1])
    counts.update(recordings.delete()[1])
    if keep_conversations:
        transaction.on_commit(lambda: remove_files(names))
    else:
        transaction.on_commit(lambda: remove_conversation_files(uuids))
    return counts


def delete_recordings(conversation: Conversation) -> int:
    """Delete a conversation's recordings (its transcript stays); returns how many there were."""
    with transaction.atomic():
        counts = delete_rows([conversation.pk], keep_conversations=True)
    return counts.get(Recording._meta.label, 0)

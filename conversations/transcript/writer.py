"""
Group commit of journal writes, one writer per server process (per event loop).

Channels runs every `database_sync_to_async` call of a process in ONE thread, so one
transaction per frame would queue every socket behind every other: at 200 busy sockets an ack
would wait for ~200 transactions. Instead, each socket hands its pending frames to this writer,
and while one transaction is running, whatever arrives from all sockets accumulates; the next
transaction stores all of it at once (`journal.append_batches`: a fixed number of bulk queries,
however many conversations). Under light load a batch is one frame and nothing waits; under
heavy load batches grow and the cost per frame falls. Each socket gets its result back (and
sends its acks) only after the commit.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import Sequence

from asgiref.sync import sync_to_async
from channels.db import aclose_old_connections
from django.db import connection

from conversations.transcript import journal
from conversations.transcript.frames import Frame
from conversations.transcript.journal import AppendResult
from voiceproject.loopbound import detached_task

# Keeps a transaction short even when thousands of frames are waiting.
MAX_FRAMES_PER_TRANSACTION = 2000
# Seconds without frames after which the writer lets its database connection go.
IDLE_CLOSE_AFTER = 1.0


class JournalWriter:
    def __init__(self, max_frames: int = MAX_FRAMES_PER_TRANSACTION, idle_close_after: float = IDLE_CLOSE_AFTER):
        self.max_frames = max_frames
        self.idle_close_after = idle_close_after
        self._arrived = asyncio.Event()
        self._pending: deque[tuple[int, Sequence[Frame], asyncio.Future]] = deque()
        self._task: asyncio.Task | None = None

    async def write(self, conversation_id: int, frames: Sequence[Frame]) -> AppendResult:
        """Store frames of one conversation; returns once they are committed (or refused)."""
        future = asyncio.get_running_loop().create_future()
        self._pending.append((conversation_id, frames, future))
        self._arrived.set()
        if self._task is None or self._task.done():
            self._task = detached_task(self._drain(), name="journal writer")
        return await future

    async def _drain(self) -> None:
        while self._pending:
            while self._pending:
                await self._write_some()
            if await self._more_frames_within(self.idle_close_after):
                continue
            # Idle: let CONN_MAX_AGE decide about the connection, as after any database call.
            # Frames may arrive meanwhile: hence the outer loop (no await after its last check).
            await aclose_old_connections()

    async def _more_frames_within(self, seconds: float) -> bool:
        """Wait for frames a little before giving up the connection: with sockets that each wait
        for their ack before sending more, the writer goes idle between every two batches, and
        reconnecting (a new PostgreSQL backend; for SQLite, a WAL checkpoint when its last
        connection closes) would cost more than the batch."""
        self._arrived.clear()
        if self._pending:
            return True
        try:
            async with asyncio.timeout(seconds):
                await self._arrived.wait()
        except TimeoutError:
            return False
        return True

    async def _write_some(self) -> None:
        taken, count = [], 0
        while self._pending and (not taken or count + len(self._pending[0][1]) <= self.max_frames):
            taken.append(self._pending.popleft())
            count += len(taken[-1][1])
        try:
            results = await sync_to_async(_write)([(c, f) for c, f, _ in taken])
        except Exception as exc:  # e.g. no database connection at all
            for _, _, future in taken:
                if not future.done():
                    future.set_exception(exc)
            return
        announced = set()
        for conversation_id, frames, future in taken:
            shared = results.get(conversation_id) or AppendResult(conversation_id, failed=True)
            own = AppendResult(
                conversation_id,
                seqs=[f.seq for f in frames],
                stored=shared.stored,
                # Two sockets of one conversation in one transaction: announce the changes once.
                changed=[] if conversation_id in announced else shared.changed,
                found=shared.found,
                failed=shared.failed,
                # By seq, of the caller's stream (a socket's or the witness's: one source per call):
                # the same frame gets the same answer on each socket.
                refused=shared.refused_of(frames[0].source) if frames else {},
            )
            announced.add(conversation_id)
            if not future.done():  # its socket may have gone away
                future.set_result(own)


def _write(batches):
    """Runs in the process's database thread (thread-sensitive sync_to_async, like
    database_sync_to_async). Unlike database_sync_to_async it does not close the connection
    after each transaction: while the writer is busy, batches follow each other and connecting
    anew for each would cost more than a small batch. The writer closes it when it goes idle.
    """
    if connection.connection is not None and connection.errors_occurred:
        if connection.is_usable():
            connection.errors_occurred = False
        else:
            connection.close()
    return journal.append_batches(batches)


_writers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, JournalWriter] = weakref.WeakKeyDictionary()


def get_writer() -> JournalWriter:
    """The writer of the running event loop (a server process has one; each test has its own)."""
    loop = asyncio.get_running_loop()
    writer = _writers.get(loop)
    if writer is None:
        writer = _writers[loop] = JournalWriter()
    return writer

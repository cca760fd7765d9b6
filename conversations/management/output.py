"""Where export_sessions writes (stdout, or a file: gzip for `.gz`) and how it reports progress."""

import gzip
import os
import sys
import time
from pathlib import Path

from django.core.management.base import CommandError
from tqdm import tqdm

# Chunks are gathered up to this size before a write: one write per tiny record would make the
# gzip stream and the system calls the bottleneck.
WRITE_BUFFER = 256 * 1024
# Seconds between two progress lines when stderr is not a terminal (a log, a cron mail).
PROGRESS_INTERVAL = 10.0


def _plain(text: str) -> str:
    return text


class Stderr:
    """The command's stderr without Django's red error styling or added newlines (tqdm's `\\r`)."""

    def __init__(self, wrapper):
        self._wrapper = wrapper

    def write(self, text: str):
        self._wrapper.write(text, style_func=_plain, ending="")

    def line(self, text: str):
        self.write(text + "\n")

    def __getattr__(self, name):  # flush, isatty, fileno: the real stream's
        return getattr(self._wrapper, name)


class Sink:
    """
    Buffered text output. A file is written under a temporary name beside it and renamed into
    place only when complete: an interrupted or failed export leaves no half file that looks
    like a backup, and `--force` keeps the old file until the new one is whole.
    """

    def __init__(self, stdout, path: str | None = None, *, force: bool = False):
        self._parts: list[str] = []
        self._size = 0
        self.path = None if path in (None, "-") else Path(path)
        self.name = str(self.path) if self.path else "stdout"
        if self.path is None:
            # Bytes when the stream has them: UTF-8 whatever the locale says.
            self._binary = getattr(stdout, "buffer", None)
            self._stdout = stdout
            return
        self._binary = None
        parent = self.path.parent
        if not parent.is_dir():
            raise CommandError(f"Cannot write {self.path}: the directory {parent} does not exist.")
        if self.path.is_dir():
            raise CommandError(f"Cannot write {self.path}: it is a directory.")
        if self.path.exists() and not force:
            raise CommandError(f"{self.path} already exists; use --force to overwrite it.")
        self._temporary = parent / f".{self.path.name}.{os.getpid()}.part"
        try:
            self._raw = open(self._temporary, "wb")  # noqa: SIM115 - closed by close()/abort()
        except OSError as error:
            raise CommandError(f"Cannot write {self.path}: {error.strerror}.") from None
        self._file = self._raw
        if self.path.suffix == ".gz":
            # mtime=0: the same data gives the same bytes.
            self._file = gzip.GzipFile(filename=self.path.stem, mode="wb", fileobj=self._raw, mtime=0)

    def write(self, text: str):
        self._parts.append(text)
        self._size += len(text)
        if self._size >= WRITE_BUFFER:
            self.flush()

    def flush(self):
        text = "".join(self._parts)
        self._parts.clear()
        self._size = 0
        if self.path is not None:
            self._file.write(text.encode())
        elif self._binary is not None:
            self._binary.write(text.encode())
        else:
            self._stdout.write(text, ending="")

    def close(self):
        """Finish the output; the file appears under its name only now."""
        self.flush()
        if self.path is None:
            (self._binary or self._stdout).flush()
            return
        try:
            if self._file is not self._raw:
                self._file.close()
            self._raw.close()
            os.replace(self._temporary, self.path)
        except OSError as error:
            self.abort()
            raise CommandError(f"Cannot write {self.path}: {error.strerror}.") from None

    def abort(self):
        """Throw away a partial file."""
        if self.path is None:
            return
        for stream in (self._file, self._raw):
            try:
                stream.close()
            except OSError:
                pass
        self._temporary.unlink(missing_ok=True)


class Progress:
    """A bar on a terminal; a line every PROGRESS_INTERVAL seconds otherwise; nothing at -v 0."""

    def __init__(self, stderr: Stderr, total: int, *, verbosity: int = 1, unit: str = "conversations"):
        self.stderr, self.total, self.unit = stderr, total, unit
        self.done = 0
        self.quiet = verbosity < 1
        self.bar = None
        if not self.quiet and stderr.isatty():
            self.bar = tqdm(total=total, unit=" " + unit, file=stderr, dynamic_ncols=True, leave=False)
        self._next_report = time.monotonic() + PROGRESS_INTERVAL

    def advance(self, count: int = 1):
        self.done += count
        if self.bar is not None:
            self.bar.update(count)
        elif not self.quiet and time.monotonic() >= self._next_report:
            self._next_report = time.monotonic() + PROGRESS_INTERVAL
            share = f" ({100 * self.done // self.total}%)" if self.total else ""
            self.stderr.line(f"{self.done} of {self.total} {self.unit}{share}")

    def close(self):
        if self.bar is not None:
            self.bar.close()


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def stdout_is_closed():
    """The reader went away (`| head`): silence the flush Python would attempt at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass

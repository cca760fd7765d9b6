"""
The audio beside an export (`export_sessions --include-recordings -o FILE`): each recording as one
file, `<FILE>.recordings/<conversation uuid>-<segment>.<ext>`, its chunks concatenated.

The folder is written under a temporary name and renamed into place with the export, so an
interrupted export leaves no half folder that looks complete (as output.Sink does for FILE).
"""

import os
import shutil
from pathlib import Path

from django.core.management.base import CommandError

from conversations.models import RecordingChunk
from conversations.recordings import store


def folder_for(export_path: Path) -> Path:
    return export_path.with_name(export_path.name + ".recordings")


class AudioFolder:
    def __init__(self, export_path: Path, *, force: bool = False):
        self.path = folder_for(export_path)
        if self.path.exists() and not force:
            raise CommandError(f"{self.path} already exists; use --force to overwrite it.")
        self._temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.part")
        shutil.rmtree(self._temporary, ignore_errors=True)
        try:
            self._temporary.mkdir()
        except OSError as error:
            raise CommandError(f"Cannot write {self.path}: {error.strerror}.") from None
        self.files = 0
        self.bytes = 0
        # Recordings written short: a chunk's file is missing (read_range stops there and logs it).
        self.incomplete: list[str] = []

    def write(self, record: dict) -> None:
        """The recordings of one exported record (its "recordings" list)."""
        for recording in record.get("recordings", ()):
            chunks = list(
                RecordingChunk.objects.filter(
                    recording__conversation__uuid=record["id"], recording__segment=recording["segment"]
                )
                .order_by("index")
                .values_list("name", "bytes")
            )
            size = sum(length for _, length in chunks)
            name = f"{record['id']}-{recording['segment']}.{store.extension(recording['mime_type'])}"
            written = 0
            with open(self._temporary / name, "wb") as out:
                for block in store.read_range(chunks, 0, size - 1) if size else ():
                    out.write(block)
                    written += len(block)
            if written < size:
                self.incomplete.append(name)
            self.files += 1
            self.bytes += written

    def close(self) -> None:
        if self.path.exists():  # --force
            shutil.rmtree(self.path)
        os.replace(self._temporary, self.path)

    def abort(self) -> None:
        shutil.rmtree(self._temporary, ignore_errors=True)

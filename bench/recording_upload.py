"""
What storing a recording costs the server, per minute of audio uploaded.

The page uploads a chunk every 5 s: Opus at ~32 kbit/s is ~20 KB a chunk, 12 chunks a minute.
In one run, per chunk, alternating so that the machine's noise hits all alike:
  upload:    PUT /api/conversations/<uuid>/recordings/1/chunks/<i> as a signed-in user (session,
             CSRF token): authenticate, check, write the chunk's file, lock the conversation and
             write the rows (conversations/recordings/store.py);
  api call:  GET /api/conversations/<uuid>/recordings/1/ by the same client: the cheapest
             authenticated JSON request of the same API (session, access check, one query);
  save:      storages["recordings"].save() of the same bytes: the file write alone.
The requests go through Django's full stack in-process (the test client); each chunk is fresh
random bytes behind a real WebM header (incompressible, like Opus).

    .venv/bin/python bench/recording_upload.py [--minutes 20] [--chunk-kb 20]

Prints CPU ms (process time, all threads) and bytes handed to write() (/proc/self/io `wchar`:
the files and the database's writes) per minute of audio, for each, and the ratios.
Database: a throw-away SQLite file (WAL), recordings in a throw-away folder.
"""

import argparse
import os
import tempfile
import time
import warnings

from django_setup import ROOT, setup_django

warnings.filterwarnings("ignore", message="No directory at")

WEBM_HEADER = (ROOT / "tests" / "fixtures" / "recordings" / "tone-0.webm").read_bytes()[:200]
CHUNKS_PER_MINUTE = 12  # one every 5 s


def written() -> int:
    with open("/proc/self/io") as io:
        return next(int(line.split()[1]) for line in io if line.startswith("wchar:"))


class Meter:
    def __init__(self):
        self.cpu = 0.0
        self.bytes = 0

    def __enter__(self):
        self._cpu, self._bytes = time.process_time(), written()

    def __exit__(self, *exc):
        self.cpu += time.process_time() - self._cpu
        self.bytes += written() - self._bytes


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=int, default=20, help="minutes of audio uploaded (default 20)")
    parser.add_argument("--chunk-kb", type=int, default=20, help="KB per 5 s chunk (default 20)")
    options = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="recording-bench-")
    setup_django(
        f"sqlite:///{workdir}/bench.sqlite3",
        ALLOWED_HOSTS="testserver",
        RECORDINGS_ROOT=f"{workdir}/recordings",
        SECURE_SSL_REDIRECT="false",
        SESSION_COOKIE_SECURE="false",
        CSRF_COOKIE_SECURE="false",
        LOG_LEVEL="ERROR",
    )
    from django.conf import settings
    from django.core.files.base import ContentFile
    from django.core.files.storage import storages
    from django.test import Client
    from django.utils.crypto import get_random_string

    from conversations.models import Conversation, RecordingChunk
    from tests.support.factories import make_user

    user = make_user("bench")
    chunks = options.minutes * CHUNKS_PER_MINUTE
    size = options.chunk_kb * 1000
    conversation = Conversation.objects.create(user=user, model="m", voice="marin", segments=1)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    # What the voice page's CSRF cookie and token would be (rendering the page needs collectstatic).
    token = get_random_string(32)
    client.cookies[settings.CSRF_COOKIE_NAME] = token
    upload_url = f"/api/conversations/{conversation.uuid}/recordings/1/chunks/"
    status_url = f"/api/conversations/{conversation.uuid}/recordings/1/"
    files = storages["recordings"]
    upload, api_call, save = Meter(), Meter(), Meter()

    # Chunk 0 first, outside the measure, so that the status call has a recording to read.
    bodies = [WEBM_HEADER + os.urandom(size - len(WEBM_HEADER))] + [os.urandom(size) for _ in range(chunks)]
    for index, body in enumerate(bodies):
        meter = upload if index else Meter()
        with meter:
            response = client.put(
                f"{upload_url}{index}",
                data=body,
                content_type="audio/webm;codecs=opus",
                headers={"X-Recording-Duration-Ms": str(5000 * (index + 1)), "X-CSRFToken": token},
            )
        assert response.status_code == 201, response.content
        if not index:
            continue
        with api_call:
            assert client.get(status_url).status_code == 200
        with save:
            files.save(f"baseline/{index:06d}.webm", ContentFile(body))
    assert RecordingChunk.objects.count() == chunks + 1

    minutes = options.minutes
    print(f"{minutes} min of audio, {chunks} chunks of {size} bytes ({size * CHUNKS_PER_MINUTE} bytes a minute)")
    print(f"{'':10} {'CPU ms/min':>11} {'bytes written/min':>18}")
    for name, meter in (("upload", upload), ("api call", api_call), ("save", save)):
        print(f"{name:10} {1000 * meter.cpu / minutes:11.1f} {meter.bytes / minutes:18,.0f}")
    print(f"upload / api call: CPU x{upload.cpu / api_call.cpu:.2f}")
    print(f"upload / save:     CPU x{upload.cpu / save.cpu:.2f}, bytes written x{upload.bytes / save.bytes:.2f}")
    print(f"upload CPU per chunk: {1000 * upload.cpu / chunks:.2f} ms")


if __name__ == "__main__":
    main()

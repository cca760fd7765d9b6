"""Recordings in tests: real audio (four 1 s chunks of a WebM/Opus tone recorded once by
Chromium's MediaRecorder, tests/fixtures/recordings/tone-*.webm), storing it through the upload's
own function, and listing what landed on disk. The `recordings_dir` fixture (tests/conftest.py)
gives each test a folder of its own."""

from pathlib import Path

FIXTURES = Path(__file__).parent.parent / "fixtures" / "recordings"
TONE = [(FIXTURES / f"tone-{i}.webm").read_bytes() for i in range(4)]
WHOLE = b"".join(TONE)
WEBM = "audio/webm;codecs=opus"


def record(conversation, segment=1, chunks=TONE):
    """Store `chunks` as one session's recording, as the upload API would, one second each."""
    from conversations.recordings import store

    for index, data in enumerate(chunks):
        store.append_chunk(conversation, segment, index, data, WEBM, 1000 * (index + 1))


def stored_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def use_recordings_dir(settings, root: Path) -> Path:
    """Point the "recordings" storage at `root` (created on the first chunk)."""
    settings.STORAGES = {
        **settings.STORAGES,
        "recordings": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(root)},
        },
    }
    return root

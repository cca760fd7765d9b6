"""
The commands around recordings: `clean_recordings` (orphaned files, rows whose file is missing)
and the exports (each record lists its recordings; `--include-recordings` writes the audio).
"""

import io
import json
import os
import time

import pytest
from django.core.management import CommandError, call_command

from conversations.models import Recording, RecordingChunk
from conversations.recordings import store
from tests.support.factories import make_conversation
from tests.support.recordings import TONE, WEBM, record, stored_files

# Every test stores into a folder of its own, whether or not it looks at it.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("recordings_dir")]


def clean(*args, **options):
    out, err = io.StringIO(), io.StringIO()
    call_command("clean_recordings", *args, stdout=out, stderr=err, **options)
    return out.getvalue()


def plant(root, name, data=b"left behind", age=7200):
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    then = time.time() - age
    os.utime(path, (then, then))
    return path


@pytest.fixture
def recorded(alice):
    conversation = make_conversation(alice, segments=1)
    record(conversation)
    return conversation


# --- clean_recordings ---------------------------------------------------------------------------
def test_a_planted_orphan_is_found_and_removed(recorded, recordings_dir):
    kept = stored_files(recordings_dir)
    orphan = plant(recordings_dir, f"{recorded.uuid}/1/000009-deadbeef.webm")
    gone_conversation = plant(recordings_dir, "0b7ee7ad-54fc-4d06-a3bd-000000000000/1/000000-abc.webm")
    out = clean()
    assert f"removed: {recorded.uuid}/1/000009-deadbeef.webm" in out
    assert "Removed 2 orphaned files" in out and "0 chunks with a missing file" in out
    assert not orphan.exists() and not gone_conversation.exists()
    assert stored_files(recordings_dir) == kept  # the recording's own files are untouched


def test_dry_run_lists_and_removes_nothing(recorded, recordings_dir):
    orphan = plant(recordings_dir, f"{recorded.uuid}/1/000009-deadbeef.webm")
    out = clean(dry_run=True)
    assert f"would remove: {recorded.uuid}/1/000009-deadbeef.webm" in out
    assert "Would remove 1 orphaned file (11 bytes)" in out
    assert orphan.exists()


def test_a_young_orphan_is_left_alone(recorded, recordings_dir):
    """An upload in flight has written its file and not yet its row."""
    young = plant(recordings_dir, f"{recorded.uuid}/1/000004-cafe.webm", age=0)
    out = clean()
    assert young.exists() and "left 1 recent file without a row" in out
    clean(min_age=0)
    assert not young.exists()


def test_rows_whose_file_is_missing_are_reported_not_deleted(recorded, recordings_dir, alice):
    lost = RecordingChunk.objects.get(index=2)
    (recordings_dir / lost.name).unlink()
    elsewhere = make_conversation(alice, segments=1)
    record(elsewhere, chunks=TONE[:1])
    for path in stored_files(recordings_dir):
        if path.parent.parent.name == str(elsewhere.uuid):
            path.unlink()
            path.parent.rmdir()
            path.parent.parent.rmdir()  # not even a folder left
    out = clean()
    assert f"missing file: {lost.name}" in out
    assert f"missing file: {RecordingChunk.objects.get(recording__conversation=elsewhere).name}" in out
    assert "2 chunks with a missing file" in out
    assert RecordingChunk.objects.count() == 5


def test_a_clean_store_reports_nothing(recorded):
    assert clean() == "Removed 0 orphaned files (0 bytes); 0 chunks with a missing file.\n"


def test_an_empty_store_is_fine(recordings_dir):
    assert not recordings_dir.exists()
    assert "Removed 0 orphaned files" in clean()


def test_a_failed_delete_leaves_an_orphan_for_the_command(
    recorded, recordings_dir, monkeypatch, django_capture_on_commit_callbacks
):
    """The rows go; the file that could not be deleted then is removed by the next clean."""
    from conversations import actions
    from conversations.models import Conversation

    files = store.storage()
    real_delete = files.delete

    def failing(name):
        raise OSError("the disk is read-only")

    monkeypatch.setattr(files, "delete", failing)
    with django_capture_on_commit_callbacks(execute=True):
        actions.delete_conversations(Conversation.objects.filter(pk=recorded.pk))
    assert not Recording.objects.exists() and len(stored_files(recordings_dir)) == 4
    monkeypatch.setattr(files, "delete", real_delete)
    for path in stored_files(recordings_dir):
        os.utime(path, (time.time() - 7200,) * 2)
    assert "Removed 4 orphaned files" in clean()
    assert stored_files(recordings_dir) == []


def test_bad_arguments_are_clear_errors():
    with pytest.raises(CommandError, match="--min-age"):
        clean(min_age="soon")


# --- Exports ----------------------------------------------------------------------------------------
def export(*args, **options):
    out, err = io.StringIO(), io.StringIO()
    call_command("export_sessions", *args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def test_each_record_lists_its_recordings(recorded, alice):
    silent = make_conversation(alice, segments=1)
    out, _ = export()
    records = {r["id"]: r for r in map(json.loads, out.splitlines())}
    recording = Recording.objects.get()
    assert records[str(recorded.uuid)]["recordings"] == [
        {
            "segment": 1,
            "mime_type": WEBM,
            "bytes": sum(map(len, TONE)),
            "duration_ms": 4000,
            "started_at": recording.started_at.isoformat().replace("+00:00", "Z"),
        }
    ]
    assert records[str(silent.uuid)]["recordings"] == []
    markdown, _ = export(format="markdown")
    assert f"- Recording: 0:04, {sum(map(len, TONE))} bytes ({WEBM})" in markdown


def test_a_record_with_recordings_imports_without_them(recorded, tmp_path):
    """The audio is not in the file: the transcript restores, the recording list is ignored."""
    from conversations.models import Conversation

    target = tmp_path / "backup.jsonl"
    export(output=str(target))
    Conversation.objects.all().delete()
    call_command("import_sessions", str(target), stdout=io.StringIO(), stderr=io.StringIO())
    assert Conversation.objects.get().uuid == recorded.uuid and not Recording.objects.exists()


def listing(folder):
    """What the export wrote in `folder` (the storage's own folder, "recordings", is there too)."""
    return sorted(p.name for p in folder.iterdir() if p.name != "recordings")


def test_include_recordings_writes_the_audio_beside_the_export(recorded, alice, tmp_path):
    second = make_conversation(alice, segments=2)
    record(second, segment=2, chunks=TONE[:2])
    target = tmp_path / "backup.jsonl"
    _, err = export("--include-recordings", output=str(target))
    folder = tmp_path / "backup.jsonl.recordings"
    assert sorted(p.name for p in folder.iterdir()) == sorted([f"{recorded.uuid}-1.webm", f"{second.uuid}-2.webm"])
    assert (folder / f"{recorded.uuid}-1.webm").read_bytes() == b"".join(TONE)
    assert (folder / f"{second.uuid}-2.webm").read_bytes() == TONE[0] + TONE[1]
    assert "2 recordings" in err
    assert listing(tmp_path) == ["backup.jsonl", "backup.jsonl.recordings"]


def test_include_recordings_says_which_audio_is_short_when_a_chunk_file_is_missing(recorded, recordings_dir, tmp_path):
    lost = RecordingChunk.objects.get(index=2)
    (recordings_dir / lost.name).unlink()
    _, err = export("--include-recordings", "--verbosity", "0", output=str(tmp_path / "backup.jsonl"))
    written = tmp_path / "backup.jsonl.recordings" / f"{recorded.uuid}-1.webm"
    assert written.read_bytes() == TONE[0] + TONE[1]  # up to the lost chunk, never other bytes
    assert f"1 recording written short, a chunk's file missing (see clean_recordings): {written.name}" in err


def test_include_recordings_needs_an_output_file(recorded):
    with pytest.raises(CommandError, match="--include-recordings needs -o FILE"):
        export("--include-recordings")
    with pytest.raises(CommandError, match="--include-recordings needs -o FILE"):
        export("--include-recordings", output="-")


def test_include_recordings_keeps_an_existing_folder_without_force(recorded, tmp_path):
    (tmp_path / "backup.jsonl.recordings").mkdir()
    with pytest.raises(CommandError, match="already exists"):
        export("--include-recordings", output=str(tmp_path / "backup.jsonl"))
    assert listing(tmp_path) == ["backup.jsonl.recordings"]  # no export, no temporary
    export("--include-recordings", "--force", output=str(tmp_path / "backup.jsonl"))
    assert [p.name for p in (tmp_path / "backup.jsonl.recordings").iterdir()] == [f"{recorded.uuid}-1.webm"]

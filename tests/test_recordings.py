"""
Recordings on the server: the chunk upload API (every refusal stores nothing), playback with
HTTP Range across chunk files, who may read and delete, and deletion taking the files along.

The audio is real: four chunks of a WebM/Opus tone recorded once by Chromium's MediaRecorder
(tests/fixtures/recordings/tone-*.webm, 1 s chunks).
"""

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from conversations import actions
from conversations.checks import recording_settings
from conversations.models import Conversation, Recording, RecordingChunk, Utterance
from conversations.recordings import store
from tests.support.factories import make_conversation, make_talk, signed_in
from tests.support.recordings import TONE, WEBM, WHOLE, stored_files

# Every test stores into a folder of its own, whether or not it looks at it.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("recordings_dir")]


def chunk_url(conversation, segment=1, index=0):
    return reverse("api_recording_chunk", args=[conversation.uuid, segment, index])


def put(client, conversation, index, data=None, *, segment=1, content_type=WEBM, duration_ms=None, **headers):
    data = TONE[index] if data is None else data
    if duration_ms is not None:
        headers["X-Recording-Duration-Ms"] = str(duration_ms)
    elif "X-Recording-Duration-Ms" not in headers:
        headers["X-Recording-Duration-Ms"] = str(1000 * (index + 1))
    return client.put(chunk_url(conversation, segment, index), data=data, content_type=content_type, headers=headers)


def upload_all(client, conversation, segment=1, chunks=TONE):
    for index, data in enumerate(chunks):
        response = put(client, conversation, index, data, segment=segment)
        assert response.status_code == 201, response.content


@pytest.fixture
def talk(alice):
    return make_conversation(alice, segments=1)


@pytest.fixture
def recorded(alice_client, talk):
    upload_all(alice_client, talk)
    return talk


# --- Upload ---------------------------------------------------------------------------------------
def test_chunks_uploaded_in_order_make_the_recording(alice_client, talk, recordings_dir):
    for index in range(4):
        response = put(alice_client, talk, index)
        assert response.status_code == 201
        assert response.json() == {
            "recording": {
                "segment": 1,
                "chunks": index + 1,
                "bytes": sum(map(len, TONE[: index + 1])),
                "duration_ms": 1000 * (index + 1),
            }
        }
    recording = Recording.objects.get(conversation=talk)
    assert (recording.mime_type, recording.chunks, recording.bytes) == (WEBM, 4, len(WHOLE))
    assert b"".join(p.read_bytes() for p in stored_files(recordings_dir)) == WHOLE
    status = alice_client.get(reverse("api_recording", args=[talk.uuid, 1]))
    assert status.status_code == 200 and status.json()["recording"]["chunks"] == 4


def test_started_at_is_when_chunk_zero_arrived_minus_its_audio(alice_client, talk):
    before = timezone.now()
    put(alice_client, talk, 0, duration_ms=4000)
    started_at = Recording.objects.get().started_at
    assert before - timedelta(seconds=4) <= started_at <= timezone.now() - timedelta(seconds=4)


def test_a_resent_chunk_changes_nothing(alice_client, recorded, recordings_dir):
    files = stored_files(recordings_dir)
    response = put(alice_client, recorded, 2)
    assert response.status_code == 200
    assert response.json()["recording"] == {"segment": 1, "chunks": 4, "bytes": len(WHOLE), "duration_ms": 4000}
    assert stored_files(recordings_dir) == files
    assert RecordingChunk.objects.count() == 4


def test_each_session_has_its_recording(alice_client, alice):
    talk = make_conversation(alice, segments=2)
    upload_all(alice_client, talk, segment=1, chunks=TONE[:2])
    upload_all(alice_client, talk, segment=2, chunks=TONE[:1])
    assert list(Recording.objects.values_list("segment", "chunks")) == [(1, 2), (2, 1)]


def assert_refused(response, status, code, recordings_dir, files_before=()):
    assert response.status_code == status, response.content
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]
    assert stored_files(recordings_dir) == list(files_before)


def test_a_different_chunk_at_a_stored_index_is_a_conflict(alice_client, recorded, recordings_dir):
    files = stored_files(recordings_dir)
    assert_refused(put(alice_client, recorded, 1, TONE[2]), 409, "chunk_conflict", recordings_dir, files)
    assert Recording.objects.get().bytes == len(WHOLE)


def test_a_chunk_out_of_order_says_which_is_expected(alice_client, talk, recordings_dir):
    response = put(alice_client, talk, 2)
    assert_refused(response, 409, "out_of_order", recordings_dir)
    assert response.json()["expected"] == 0
    put(alice_client, talk, 0)
    files = stored_files(recordings_dir)
    response = put(alice_client, talk, 2)
    assert_refused(response, 409, "out_of_order", recordings_dir, files)
    assert response.json()["expected"] == 1


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (b"<html>not audio at all</html>" * 10, WEBM),  # wrong magic bytes
        (b"OggS" + TONE[0][4:], WEBM),  # another container's header under the WebM type
        (TONE[0], "text/plain"),
        (TONE[0], "video/webm"),
        (TONE[0], ""),
        (TONE[0], "audio/webm;" + "x" * 200),
    ],
    ids=["html", "ogg-as-webm", "text", "video", "none", "overlong"],
)
def test_a_first_chunk_that_is_not_audio_is_refused(alice_client, talk, recordings_dir, data, content_type):
    assert_refused(put(alice_client, talk, 0, data, content_type=content_type), 415, "not_audio", recordings_dir)
    assert not Recording.objects.exists()


def test_other_containers_are_recognised_by_their_magic_bytes(alice_client, alice):
    ogg = make_conversation(alice, segments=1)
    mp4 = make_conversation(alice, segments=1)
    assert put(alice_client, ogg, 0, b"OggS\x00\x02" + bytes(200), content_type="audio/ogg;codecs=opus").status_code == 201
    assert put(alice_client, mp4, 0, b"\x00\x00\x00\x18ftypmp42" + bytes(200), content_type="audio/mp4").status_code == 201


def test_every_chunk_keeps_the_recordings_container(alice_client, talk, recordings_dir):
    put(alice_client, talk, 0)
    files = stored_files(recordings_dir)
    assert_refused(put(alice_client, talk, 1, content_type="audio/ogg"), 415, "not_audio", recordings_dir, files)


def test_a_chunk_too_large_is_refused(alice_client, talk, recordings_dir, settings):
    settings.RECORDING_MAX_CHUNK_BYTES = 4000
    assert_refused(put(alice_client, talk, 0), 413, "chunk_too_large", recordings_dir)


def test_the_conversation_total_is_bounded_across_its_recordings(alice_client, alice, recordings_dir, settings):
    settings.RECORDING_MAX_BYTES_PER_CONVERSATION = len(TONE[0]) + len(TONE[1]) + 100
    talk = make_conversation(alice, segments=2)
    upload_all(alice_client, talk, segment=1, chunks=TONE[:2])
    files = stored_files(recordings_dir)
    assert_refused(put(alice_client, talk, 2), 413, "recording_too_large", recordings_dir, files)
    assert_refused(put(alice_client, talk, 0, segment=2), 413, "recording_too_large", recordings_dir, files)
    assert Recording.objects.get().bytes == len(TONE[0]) + len(TONE[1])


def test_a_users_recordings_are_bounded_across_their_conversations(alice_client, alice, bob, recordings_dir, settings):
    settings.RECORDING_MAX_BYTES_PER_USER = len(TONE[0]) * 2 + 100
    first, second, third = (make_conversation(alice, segments=1) for _ in range(3))
    upload_all(alice_client, first, chunks=TONE[:1])
    upload_all(alice_client, second, chunks=TONE[:1])
    files = stored_files(recordings_dir)
    response = put(alice_client, third, 0)
    assert_refused(response, 413, "recording_too_large", recordings_dir, files)
    assert "Your recordings" in response.json()["error"]["message"]
    # Someone else's audio does not count against alice, nor hers against them.
    assert put(signed_in(bob), make_conversation(bob, segments=1), 0).status_code == 201


def test_after_the_conversation_closed_nothing_is_accepted(alice_client, alice, recordings_dir, settings):
    settings.CONVERSATION_LATE_EVENTS_SECONDS = 120
    closed = make_conversation(alice, segments=1, status="ended", ended_at=timezone.now() - timedelta(minutes=5))
    assert_refused(put(alice_client, closed, 0), 409, "conversation_closed", recordings_dir)
    just_ended = make_conversation(alice, segments=1, status="ended", ended_at=timezone.now() - timedelta(seconds=30))
    assert put(alice_client, just_ended, 0).status_code == 201  # the last chunks arrive after the end


def test_someone_elses_or_an_unknown_conversation_is_not_found(client, bob, talk, recordings_dir):
    bobs = signed_in(bob)
    assert_refused(put(bobs, talk, 0), 404, "not_found", recordings_dir)
    unknown = Conversation(uuid="00000000-0000-4000-8000-000000000000")
    assert_refused(put(bobs, unknown, 0), 404, "not_found", recordings_dir)
    assert bobs.get(reverse("api_recording", args=[talk.uuid, 1])).status_code == 404


def test_a_session_the_conversation_never_had_is_not_found(alice_client, talk, recordings_dir):
    assert_refused(put(alice_client, talk, 0, segment=2), 404, "not_found", recordings_dir)
    assert alice_client.get(reverse("api_recording", args=[talk.uuid, 1])).status_code == 404  # none yet


@pytest.mark.parametrize(
    ("segment", "index", "headers", "body"),
    [
        ("x", "0", {}, None),
        ("0", "0", {}, None),
        ("1", "-1", {}, None),
        ("1", "1e3", {}, None),
        ("1", "0", {"X-Recording-Duration-Ms": "soon"}, None),
        ("1", "0", {"X-Recording-Duration-Ms": ""}, None),
        ("1", "0", {}, b""),
    ],
    ids=["segment-word", "segment-zero", "index-negative", "index-float", "duration-word", "duration-empty", "empty"],
)
def test_a_malformed_request_is_invalid(alice_client, talk, recordings_dir, segment, index, headers, body):
    headers = {"X-Recording-Duration-Ms": "1000", **headers}
    url = f"/api/conversations/{talk.uuid}/recordings/{segment}/chunks/{index}"
    response = alice_client.put(url, data=TONE[0] if body is None else body, content_type=WEBM, headers=headers)
    assert_refused(response, 400, "invalid_request", recordings_dir)


def test_a_missing_duration_header_is_invalid(alice_client, talk, recordings_dir):
    response = alice_client.put(chunk_url(talk), data=TONE[0], content_type=WEBM)
    assert_refused(response, 400, "invalid_request", recordings_dir)


def test_nothing_is_accepted_when_recordings_are_off(alice_client, talk, recordings_dir, settings):
    settings.RECORDINGS = "off"
    assert_refused(put(alice_client, talk, 0), 403, "recordings_disabled", recordings_dir)


def test_anonymous_and_cross_site_uploads_are_refused(client, alice, talk, recordings_dir):
    assert_refused(put(client, talk, 0), 401, "not_authenticated", recordings_dir)
    assert_refused(put(signed_in(alice, enforce_csrf_checks=True), talk, 0), 403, "csrf_failed", recordings_dir)
    assert client.get(chunk_url(talk)).status_code in (401, 405)


def test_the_upload_needs_put(alice_client, talk):
    response = alice_client.post(chunk_url(talk), data=TONE[0], content_type=WEBM)
    assert response.status_code == 405 and response.json()["error"]["code"] == "method_not_allowed"


def test_a_failed_row_leaves_no_file(alice, talk, recordings_dir, monkeypatch):
    """The file is written first; when the rows cannot be, it is removed again."""

    def broken(*args):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(store, "_save_rows", broken)
    with pytest.raises(RuntimeError):
        store.append_chunk(talk, 1, 0, TONE[0], WEBM, 1000)
    assert stored_files(recordings_dir) == []
    assert not Recording.objects.exists()


# --- Concurrency: the bound holds when uploads race -----------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_concurrent_uploads_cannot_pass_the_conversation_total_together(alice, recordings_dir, settings):
    settings.RECORDING_MAX_BYTES_PER_CONVERSATION = 2 * len(TONE[0]) + 10  # room for two first chunks
    talk = make_conversation(alice, segments=6)
    barrier = threading.Barrier(6)
    outcomes = []

    def upload(segment):
        try:
            barrier.wait()
            store.append_chunk(talk, segment, 0, TONE[0], WEBM, 1000)
            outcomes.append("stored")
        except store.RecordingTooLarge:
            outcomes.append("too large")
        finally:
            connection.close()

    threads = [threading.Thread(target=upload, args=(segment,)) for segment in range(1, 7)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["stored"] * 2 + ["too large"] * 4
    assert sum(Recording.objects.values_list("bytes", flat=True)) == 2 * len(TONE[0])
    assert len(stored_files(recordings_dir)) == 2


@pytest.mark.django_db(transaction=True)
def test_concurrent_uploads_to_several_conversations_cannot_pass_the_users_total(alice, recordings_dir, settings):
    settings.RECORDING_MAX_BYTES_PER_USER = 2 * len(TONE[0]) + 10
    talks = [make_conversation(alice, segments=1) for _ in range(5)]
    barrier = threading.Barrier(5)
    outcomes = []

    def upload(talk):
        try:
            barrier.wait()
            store.append_chunk(talk, 1, 0, TONE[0], WEBM, 1000)
            outcomes.append("stored")
        except store.RecordingTooLarge:
            outcomes.append("too large")
        finally:
            connection.close()

    threads = [threading.Thread(target=upload, args=(talk,)) for talk in talks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["stored"] * 2 + ["too large"] * 3
    assert len(stored_files(recordings_dir)) == 2


@pytest.mark.django_db(transaction=True)
def test_concurrent_uploads_of_one_index_store_one_chunk(alice, recordings_dir):
    talk = make_conversation(alice, segments=1)
    barrier = threading.Barrier(4)
    outcomes = []

    def upload(data):
        try:
            barrier.wait()
            outcomes.append("stored" if store.append_chunk(talk, 1, 0, data, WEBM, 1000).created else "resent")
        except store.ChunkConflict:
            outcomes.append("conflict")
        finally:
            connection.close()

    other = TONE[0][:-1] + b"\x00"
    threads = [threading.Thread(target=upload, args=(data,)) for data in (TONE[0], TONE[0], other, other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    chunk = RecordingChunk.objects.get()
    winner = TONE[0] if Path(recordings_dir / chunk.name).read_bytes() == TONE[0] else other
    assert Path(recordings_dir / chunk.name).read_bytes() == winner
    assert sorted(outcomes) == ["conflict", "conflict", "resent", "stored"]
    assert len(stored_files(recordings_dir)) == 1


# --- Playback -------------------------------------------------------------------------------------
def play_url(conversation, segment=None):
    if segment is None:
        return reverse("conversations:recording", args=[conversation.uuid])
    return reverse("conversations:recording_segment", args=[conversation.uuid, segment])


def body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def test_the_whole_recording_plays(alice_client, recorded):
    response = alice_client.get(play_url(recorded))
    assert response.status_code == 200
    assert body(response) == WHOLE
    assert response["Content-Type"] == WEBM
    assert response["Content-Length"] == str(len(WHOLE))
    assert response["Accept-Ranges"] == "bytes"
    assert "private" in response["Cache-Control"]
    assert "Content-Disposition" not in response


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=0-0", 0, 0),
        ("bytes=100-199", 100, 199),
        # Across the first chunk boundary, and across two of them.
        (f"bytes={len(TONE[0]) - 10}-{len(TONE[0]) + 9}", len(TONE[0]) - 10, len(TONE[0]) + 9),
        (f"bytes=4000-{len(TONE[0]) + len(TONE[1]) + 5}", 4000, len(TONE[0]) + len(TONE[1]) + 5),
        ("bytes=9000-", 9000, len(WHOLE) - 1),
        ("bytes=-100", len(WHOLE) - 100, len(WHOLE) - 1),
        ("bytes=-999999", 0, len(WHOLE) - 1),
        (f"bytes=12000-{10 * len(WHOLE)}", 12000, len(WHOLE) - 1),
    ],
)
def test_a_range_answers_206_with_exactly_its_bytes(alice_client, recorded, header, first, last):
    response = alice_client.get(play_url(recorded), headers={"Range": header})
    assert response.status_code == 206
    assert body(response) == WHOLE[first : last + 1]
    assert response["Content-Range"] == f"bytes {first}-{last}/{len(WHOLE)}"
    assert response["Content-Length"] == str(last - first + 1)


@pytest.mark.parametrize("header", [f"bytes={len(WHOLE)}-", f"bytes={len(WHOLE) + 5}-{len(WHOLE) + 10}", "bytes=-0"])
def test_an_unsatisfiable_range_answers_416(alice_client, recorded, header):
    response = alice_client.get(play_url(recorded), headers={"Range": header})
    assert response.status_code == 416
    assert response["Content-Range"] == f"bytes */{len(WHOLE)}"


@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "items=0-1", "bytes=9-3", "bytes=-"])
def test_a_range_not_served_gets_the_whole_recording(alice_client, recorded, header):
    response = alice_client.get(play_url(recorded), headers={"Range": header})
    assert response.status_code == 200 and body(response) == WHOLE


def test_if_range_with_another_version_gets_the_whole_recording(alice_client, recorded):
    etag = alice_client.get(play_url(recorded))["ETag"]
    assert alice_client.get(play_url(recorded), headers={"Range": "bytes=0-9", "If-Range": etag}).status_code == 206
    stale = alice_client.get(play_url(recorded), headers={"Range": "bytes=0-9", "If-Range": '"old"'})
    assert stale.status_code == 200 and body(stale) == WHOLE


def test_download_is_an_attachment_with_a_sensible_name(alice_client, recorded):
    response = alice_client.get(play_url(recorded, 1) + "?download=1")
    assert response.status_code == 200 and body(response) == WHOLE
    assert response["Content-Disposition"] == f'attachment; filename="conversation-{recorded.uuid}-1.webm"'


def test_each_session_plays_by_its_segment_and_the_first_by_default(alice_client, alice):
    talk = make_conversation(alice, segments=3)
    upload_all(alice_client, talk, segment=2, chunks=TONE[:2])
    upload_all(alice_client, talk, segment=3, chunks=TONE[:3])
    assert body(alice_client.get(play_url(talk))) == TONE[0] + TONE[1]  # the first there is
    assert body(alice_client.get(play_url(talk, 3))) == b"".join(TONE[:3])
    assert alice_client.get(play_url(talk, 1)).status_code == 404


def test_only_the_owner_and_staff_can_listen(recorded, bob, reviewer):
    assert signed_in(bob).get(play_url(recorded)).status_code == 404
    assert signed_in(bob).get(play_url(recorded, 1) + "?download=1").status_code == 404
    staff = signed_in(reviewer).get(play_url(recorded))
    assert staff.status_code == 200 and body(staff) == WHOLE
    anonymous = Client().get(play_url(recorded))
    assert anonymous.status_code == 302 and "/login" in anonymous["Location"]


def test_no_recording_is_a_404(alice_client, talk):
    assert alice_client.get(play_url(talk)).status_code == 404


def test_head_answers_the_headers_alone(alice_client, recorded):
    response = alice_client.head(play_url(recorded), headers={"Range": "bytes=10-19"})
    assert response.status_code == 206 and response["Content-Length"] == "10" and body(response) == b""


# --- The pages -------------------------------------------------------------------------------------
def test_the_transcript_page_lists_its_recordings(alice_client, recorded):
    response = alice_client.get(recorded.get_absolute_url())
    [recording] = response.context["recordings"]
    assert recording == {
        "segment": 1,
        "url": play_url(recorded, 1),
        "download_url": play_url(recorded, 1) + "?download=1",
        "duration_ms": 4000,
        "started_at": Recording.objects.get().started_at.isoformat(),
        "mime_type": WEBM,
        "bytes": len(WHOLE),
    }
    assert f'<audio controls preload="metadata" src="{play_url(recorded, 1)}"' in response.content.decode()


def test_the_admin_change_page_has_the_player(client, recorded, reviewer):
    page = signed_in(reviewer).get(reverse("admin:conversations_conversation_change", args=[recorded.pk]))
    assert page.status_code == 200
    assert f'src="{play_url(recorded, 1)}"' in page.content.decode()


# --- Deleting -------------------------------------------------------------------------------------
def delete_url(conversation):
    return reverse("conversations:recording_delete", args=[conversation.uuid])


def test_the_owner_deletes_the_recording_and_keeps_the_transcript(
    alice_client, alice, recordings_dir, django_capture_on_commit_callbacks
):
    talk = make_talk(alice, segments=1)
    upload_all(alice_client, talk)
    other = make_conversation(alice, segments=1)
    upload_all(alice_client, other, chunks=TONE[:1])
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post(delete_url(talk))
    assert response.status_code == 302 and response["Location"] == talk.get_absolute_url()
    assert not Recording.objects.filter(conversation=talk).exists()
    assert Utterance.objects.filter(conversation=talk).count() == 2
    assert [p.name for p in stored_files(recordings_dir)] == [RecordingChunk.objects.get().name.split("/")[-1]]
    assert alice_client.get(play_url(talk)).status_code == 404


def test_nobody_else_deletes_a_recording(recorded, bob, reviewer, recordings_dir):
    files = stored_files(recordings_dir)
    assert signed_in(bob).post(delete_url(recorded)).status_code == 404
    assert signed_in(reviewer).post(delete_url(recorded)).status_code == 404
    assert signed_in(bob).get(delete_url(recorded)).status_code in (404, 405)
    assert stored_files(recordings_dir) == files and Recording.objects.exists()


def test_deleting_conversations_deletes_their_files_after_the_rows(
    alice_client, alice, recordings_dir, django_capture_on_commit_callbacks
):
    doomed = [make_conversation(alice, segments=2) for _ in range(3)]
    for conversation in doomed:
        upload_all(alice_client, conversation, segment=1, chunks=TONE[:2])
        upload_all(alice_client, conversation, segment=2, chunks=TONE[:1])
    kept = make_conversation(alice, segments=1)
    upload_all(alice_client, kept, chunks=TONE[:1])
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        counts = actions.delete_conversations(Conversation.objects.exclude(pk=kept.pk), batch_size=2)
    assert len(callbacks) == 2 * 2  # per batch, after it commits: the files, the live watchers
    assert counts["conversations.Recording"] == 6 and counts["conversations.RecordingChunk"] == 9
    assert [p.parent.parent.name for p in stored_files(recordings_dir)] == [str(kept.uuid)]
    assert [p.name for p in recordings_dir.iterdir()] == [str(kept.uuid)]  # no empty folders left


def test_a_rolled_back_delete_keeps_the_files(alice_client, recorded, recordings_dir):
    """Files go only once the rows' deletion committed: not at all when it rolls back."""
    files = stored_files(recordings_dir)
    # No on-commit callbacks run inside the test's transaction (it is rolled back at the end).
    actions.delete_conversations(Conversation.objects.filter(pk=recorded.pk))
    assert stored_files(recordings_dir) == files


def test_purge_deletes_old_recordings(alice_client, alice, recordings_dir, django_capture_on_commit_callbacks):
    from django.core.management import call_command

    old = make_conversation(alice, segments=1)
    upload_all(alice_client, old, chunks=TONE[:2])
    Conversation.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - timedelta(days=40), last_activity_at=timezone.now() - timedelta(days=40)
    )
    recent = make_conversation(alice, segments=1)
    upload_all(alice_client, recent, chunks=TONE[:1])
    with django_capture_on_commit_callbacks(execute=True):
        call_command("purge_sessions", older_than=30, stdout=__import__("io").StringIO())
    assert [p.parent.parent.name for p in stored_files(recordings_dir)] == [str(recent.uuid)]
    assert list(Recording.objects.values_list("conversation_id", flat=True)) == [recent.pk]


# --- Settings ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("changes", "error_id"),
    [
        ({"RECORDING_MAX_CHUNK_BYTES": 1000}, "conversations.E020"),
        ({"RECORDING_MAX_BYTES_PER_CONVERSATION": 1000}, "conversations.E021"),
        ({"RECORDINGS_STORAGE": "ftp"}, "conversations.E022"),
        ({"RECORDING_MAX_BYTES_PER_USER": 1024 * 1024}, "conversations.E026"),
        ({"RECORDINGS_ROOT": Path(__file__).resolve().parent.parent / "static" / "recordings"}, "conversations.E025"),
    ],
)
def test_bad_recording_settings_stop_start_up(settings, changes, error_id):
    assert recording_settings(None) == []
    for name, value in changes.items():
        setattr(settings, name, value)
    assert error_id in [error.id for error in recording_settings(None)]


# --- The session's segment: the recording's number -----------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_sessions_started_at_once_each_get_their_own_segment(alice):
    """Two keys for one conversation at the same moment (two tabs): each page must record its own
    recording, so each answer carries a different segment."""
    from asgiref.sync import async_to_sync

    from conversations.realtime import issuing

    talk = make_conversation(alice, segments=1, status="ended", ended_at=timezone.now())
    plan = issuing.SessionPlan(model="gpt-realtime-2.1", voice="cedar", turn_detection="server_vad", language="de")
    barrier = threading.Barrier(3)
    segments = []

    def continue_it():
        try:
            stale = Conversation.objects.get(pk=talk.pk)  # each loaded segments=1
            barrier.wait()
            segments.append(async_to_sync(issuing.arecord_session)(alice, plan, stale).segments)
        finally:
            connection.close()

    threads = [threading.Thread(target=continue_it) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(segments) == [2, 3, 4]
    talk.refresh_from_db()
    assert (talk.segments, talk.voice, talk.language, talk.status, talk.ended_at) == (4, "cedar", "de", "active", None)


def test_the_delete_page_says_the_recording_goes_too(alice_client, recorded):
    page = alice_client.get(reverse("conversations:delete", args=[recorded.uuid])).content.decode()
    assert "its event journal, its recording and its usage records are deleted" in page


def test_a_missing_chunk_file_stops_the_answer_short(alice_client, recorded, recordings_dir, caplog):
    (recordings_dir / RecordingChunk.objects.get(index=1).name).unlink()
    response = alice_client.get(play_url(recorded))
    assert body(response) == TONE[0]  # what there is, in place: never other bytes at an offset
    assert "is missing" in caplog.text

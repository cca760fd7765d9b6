"""manage.py import_sessions: an export is a real backup."""

import gzip
import io
import json

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from conversations.models import Conversation, Event, ResponseUsage, TranscriptionUsage, Utterance
from tests.support.factories import T0, make_conversation, make_full_conversation, make_user
from tests.support.processes import run_manage

pytestmark = pytest.mark.django_db


def export_to(path, *args, **options):
    call_command(
        "export_sessions",
        *args,
        output=str(path),
        force=True,
        stdout=io.StringIO(),
        stderr=io.StringIO(),
        **options,
    )
    return path


def import_(path, **options):
    out = io.StringIO()
    call_command("import_sessions", str(path), stdout=out, **options)
    return out.getvalue()


def counts():
    return [m.objects.count() for m in (Conversation, Utterance, ResponseUsage, Event, TranscriptionUsage)]


def wipe_and_recreate_users():
    """An empty database with the same usernames (other primary keys, created in another order)."""
    names = sorted(get_user_model().objects.values_list("username", "is_staff"), reverse=True)
    Conversation.objects.all().delete()
    get_user_model().objects.all().delete()
    for name, staff in names:
        make_user(name, is_staff=staff)
    assert counts() == [0, 0, 0, 0, 0]


@pytest.fixture
def data():
    alice, bob, staff = make_user("alice"), make_user("bob"), make_user("reviewer", is_staff=True)
    talk = make_full_conversation(alice, utterances=6, events=5)
    for n, (tokens, seconds) in enumerate([(170, "0"), (0, "12.345")]):  # token- and duration-billed
        TranscriptionUsage.objects.create(conversation=talk, item_id=f"item_{talk.pk}_{2 * n}", input_tokens=tokens,
                                          input_audio_tokens=tokens, seconds=seconds, source=["server", "browser"][n],
                                          created_at=T0)  # fmt: skip
    make_full_conversation(
        bob,
        status="active",
        turn_detection="manual",
        reviewed=True,
        reviewed_by=staff,
        reviewed_at=T0,
        flagged=True,
        review_note="Check the second answer.\nIt is wrong.",
    )
    Utterance.objects.create(
        conversation=make_conversation(alice, title=""),
        item_id="only",
        role="user",
        position=0,
        status="failed",
        error="audio too short",
    )
    make_conversation(bob, status="failed", ended_at=timezone.now())  # nothing said at all


@pytest.mark.parametrize("include_events", [False, True])
@pytest.mark.parametrize("suffix", ["jsonl", "jsonl.gz"])
def test_round_trip_export_import_export_is_identical(data, tmp_path, include_events, suffix):
    first = export_to(tmp_path / f"first.{suffix}", include_events=include_events)
    before = counts()
    wipe_and_recreate_users()
    report = import_(first)
    expected_events = before[3] if include_events else 0
    assert counts() == before[:3] + [expected_events] + before[4:]
    assert before[4] == 2
    assert report.startswith(
        f"Imported 4 conversations ({before[1]} utterances, {before[2]} response usage records"
    )
    second = export_to(tmp_path / f"second.{suffix}", include_events=include_events)
    read = gzip.open if suffix.endswith(".gz") else open
    with read(first, "rb") as one, read(second, "rb") as two:
        assert two.read() == one.read()
    # The other formats agree too (they are views of the same records).
    for format in ("json", "csv", "markdown"):
        assert export_to(tmp_path / "a", format=format).read_bytes()


def test_the_other_formats_round_trip_too(data, tmp_path):
    exports = {
        f: export_to(tmp_path / f"before.{f}", format=f).read_bytes() for f in ("json", "csv", "markdown")
    }
    backup = export_to(tmp_path / "backup.jsonl", include_events=True)
    wipe_and_recreate_users()
    import_(backup)
    for format, before in exports.items():
        assert export_to(tmp_path / f"after.{format}", format=format).read_bytes() == before, format


def test_import_restores_review_and_users_by_name(data, tmp_path):
    backup = export_to(tmp_path / "backup.jsonl")
    wipe_and_recreate_users()
    import_(backup)
    flagged = Conversation.objects.get(flagged=True)
    assert flagged.user.username == "bob"
    assert flagged.reviewed_by.username == "reviewer"
    assert flagged.review_note == "Check the second answer.\nIt is wrong."
    assert flagged.turn_detection == "manual"
    assert list(flagged.utterances.values_list("position", flat=True)) == [0, 1, 2, 3]


def test_conflicts_are_restored_and_a_record_written_before_them_counts_none(data, tmp_path):
    Conversation.objects.filter(flagged=True).update(conflicts=2)
    backup = export_to(tmp_path / "backup.jsonl")
    lines = [json.loads(line) for line in backup.read_text().splitlines()]
    assert sorted(record["conflicts"] for record in lines) == [0, 0, 0, 2]
    wipe_and_recreate_users()
    import_(backup)
    assert Conversation.objects.get(flagged=True).conflicts == 2
    for record in lines:
        del record["conflicts"]  # as exported before the count existed (same schema)
    old = tmp_path / "old.jsonl"
    old.write_text("".join(json.dumps(record) + "\n" for record in lines))
    wipe_and_recreate_users()
    import_(old)
    assert list(Conversation.objects.values_list("conflicts", flat=True)) == [0, 0, 0, 0]


def test_importing_twice_creates_nothing_new(data, tmp_path):
    backup = export_to(tmp_path / "backup.jsonl", include_events=True)
    before = counts()
    assert import_(backup).endswith("skipped 4 already stored.\n")
    assert counts() == before
    wipe_and_recreate_users()
    import_(backup)
    assert "Imported 0 conversations" in import_(backup)
    assert counts() == before


def test_dry_run_writes_nothing(data, tmp_path):
    backup = export_to(tmp_path / "backup.jsonl")
    wipe_and_recreate_users()
    assert import_(backup, dry_run=True).startswith("Would import 4 conversations")
    assert counts() == [0, 0, 0, 0, 0]


def test_an_empty_export_imports_nothing(tmp_path):
    empty = export_to(tmp_path / "empty.jsonl")
    assert empty.read_bytes() == b""
    assert import_(empty).startswith("Imported 0 conversations")


# --- Broken files: the line is named, nothing is imported -----------------------------------
@pytest.fixture
def backup(data, tmp_path):
    path = export_to(tmp_path / "backup.jsonl", include_events=True)
    wipe_and_recreate_users()
    return path


def lines_of(path):
    return path.read_text(encoding="utf-8").splitlines(keepends=True)


def refused(path, message):
    with pytest.raises(CommandError) as error:
        import_(path)
    assert message in str(error.value)
    assert str(error.value).endswith("Nothing was imported.")
    assert counts() == [0, 0, 0, 0, 0]


def test_a_truncated_file_is_refused(backup):
    text = backup.read_text(encoding="utf-8")
    backup.write_text(text[: len(text) - 40], encoding="utf-8")
    refused(backup, "line 4: not valid JSON")
    refused(backup, "the file looks truncated")


def test_a_corrupt_line_is_refused(backup):
    lines = lines_of(backup)
    lines[1] = lines[1].replace('"title":', '"title"', 1)
    backup.write_text("".join(lines), encoding="utf-8")
    refused(backup, "line 2: not valid JSON")


def test_bytes_that_are_not_utf8_are_refused(backup):
    backup.write_bytes(backup.read_bytes() + b'{"\xff"}\n')
    refused(backup, "line 5: not UTF-8 text")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r.update(schema=2), "line 3: schema: expected 1, got 2"),
        (lambda r: r.pop("schema"), "line 3: schema: expected 1, got None"),
        (lambda r: r.update(id="nope"), "line 3: id: 'nope' is not a UUID"),
        (lambda r: r.pop("model"), "line 3: model: missing"),
        (lambda r: r.update(model=""), "line 3: model: This field cannot be blank."),
        (lambda r: r.update(status="paused"), "line 3: status: Value 'paused' is not a valid choice."),
        (lambda r: r.update(created_at="yesterday"), "line 3: created_at:"),
        (lambda r: r.update(created_at="2025-03-01T12:00:00"), "line 3: created_at: a time zone is required"),
        (lambda r: r.update(segments=-1), "line 3: segments:"),
        (lambda r: r.update(segments="1"), "line 3: segments: '1' is not a valid PositiveIntegerField"),
        (lambda r: r["usage"].update(input_tokens=1.5), "line 3: usage.input_tokens: 1.5 is not a valid"),
        (lambda r: r.update(utterances={}), "line 3: utterances: expected a list"),
        (lambda r: r["utterances"][0].update(role="robot"), "line 3: utterances[0].role: Value 'robot'"),
        (lambda r: r["utterances"][0].update(text=None), "line 3: utterances[0].text: may not be null"),
        (
            lambda r: r["utterances"][0].update(item_id="x" * 101),
            "line 3: utterances[0].item_id: Ensure this value",
        ),
        (
            lambda r: r["utterances"].append(dict(r["utterances"][0], position=9)),
            "utterances[1].item_id: 'only' appears twice",
        ),
        (
            lambda r: r["review"].update(reviewed="yes"),
            "line 3: review.reviewed: 'yes' is not a valid BooleanField",
        ),
        (
            lambda r: r.update(
                events=[{"seq": 0, "type": "x", "payload": {}, "received_at": "2025-03-01T00:00:00Z"}]
            ),
            "line 3: events[0].seq: must be at least 1",
        ),
        (lambda r: r.update(user=7), "line 3: user: expected a string"),
    ],
)
def test_an_invalid_record_is_refused_with_its_line(backup, change, message):
    lines = lines_of(backup)
    record = json.loads(lines[2])
    change(record)
    lines[2] = json.dumps(record) + "\n"
    backup.write_text("".join(lines), encoding="utf-8")
    refused(backup, message)


def test_a_record_that_is_not_an_object_is_refused(backup):
    backup.write_text(backup.read_text() + "[1, 2]\n")
    refused(backup, "line 5: expected a JSON object")


def test_unknown_users_are_all_named(backup):
    get_user_model().objects.filter(username__in=["bob", "reviewer"]).delete()
    refused(backup, "unknown user(s): 'bob' (line 2), 'reviewer' (line 2); create them first")


def test_a_json_array_export_gets_a_hint(data, tmp_path):
    path = export_to(tmp_path / "export.json", format="json")
    with pytest.raises(CommandError, match="this looks like --format json, import reads --format jsonl"):
        import_(path)


def test_a_truncated_gzip_file_is_refused(data, tmp_path):
    path = export_to(tmp_path / "backup.jsonl.gz")
    wipe_and_recreate_users()
    path.write_bytes(path.read_bytes()[:-30])
    refused(path, "the gzip data is truncated or corrupt")


def test_a_corrupt_gzip_file_is_refused(tmp_path):
    path = tmp_path / "backup.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"schema": 1}\n')[:10] + b"garbage" * 10)
    refused(path, "the gzip data is truncated or corrupt")


def test_a_missing_file_is_refused(tmp_path):
    with pytest.raises(CommandError, match="does not exist. Nothing was imported."):
        import_(tmp_path / "nope.jsonl")
    with pytest.raises(CommandError, match="is a directory"):
        import_(tmp_path)


def test_bad_import_on_the_command_line_exits_non_zero_without_a_traceback(tmp_path):
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"schema": 1, "id": \n')
    for path, message in [(tmp_path / "missing.jsonl", "does not exist"), (broken, "line 1: not valid JSON")]:
        result = run_manage("import_sessions", str(path), text=True)
        assert result.returncode == 1
        assert message in result.stderr
        assert "Traceback" not in result.stderr


def test_a_batch_the_database_refuses_stops_the_import_and_a_rerun_finishes_it(backup, monkeypatch):
    from django.db import IntegrityError

    from conversations.export import restore

    monkeypatch.setattr(restore, "BATCH_SIZE", 2)
    real_write = restore._write
    calls = []

    def flaky(new, report, *, dry_run):
        calls.append(len(new))
        if len(calls) == 2:
            raise IntegrityError("disk says no")
        real_write(new, report, dry_run=dry_run)

    monkeypatch.setattr(restore, "_write", flaky)
    with pytest.raises(CommandError) as error:
        import_(backup)
    assert "lines 3-4 could not be stored (disk says no); the 2 conversations before them were" in str(
        error.value
    )
    assert Conversation.objects.count() == 2
    assert import_(backup).startswith("Imported 2 conversations")
    assert Conversation.objects.count() == 4


def test_a_record_written_before_transcription_usage_imports_with_none(data, tmp_path):
    backup = export_to(tmp_path / "backup.jsonl")
    lines = [json.loads(line) for line in backup.read_text().splitlines()]
    assert sorted(len(record["transcriptions"]) for record in lines) == [0, 0, 0, 2]
    assert {row["seconds"] for record in lines for row in record["transcriptions"]} == {"0.000", "12.345"}
    for record in lines:
        del record["transcriptions"]
    old = tmp_path / "old.jsonl"
    old.write_text("".join(json.dumps(record) + "\n" for record in lines))
    wipe_and_recreate_users()
    import_(old)
    assert Conversation.objects.count() == 4 and not TranscriptionUsage.objects.exists()

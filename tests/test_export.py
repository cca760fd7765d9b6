"""manage.py export_sessions, and the serializers it shares with the download view and the admin."""

import csv
import dataclasses
import datetime
import gzip
import io
import json
import re

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError, OutputWrapper

from conversations.export import formats, reader, records
from conversations.management import output
from conversations.models import Conversation, Utterance
from tests.support.factories import T0, make_conversation, make_full_conversation, make_user
from tests.support.processes import run_manage

pytestmark = pytest.mark.django_db


def export(*args, **options):
    """Run the command; returns (stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    call_command("export_sessions", *args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def jsonl(text):
    return [json.loads(line) for line in text.splitlines()]


def ids(records):
    return [record["id"] for record in records]


# --- Formats --------------------------------------------------------------------------------
def test_jsonl_is_one_conversation_per_line_with_ordered_utterances(alice):
    conversation = make_full_conversation(alice, utterances=5)
    out, err = export()
    (record,) = jsonl(out)
    assert record["schema"] == records.SCHEMA
    assert record["id"] == str(conversation.uuid)
    assert record["user"] == "alice"
    assert record["title"] == conversation.title
    assert record["model"] == "gpt-realtime-2.1" and record["voice"] == "marin"
    assert record["status"] == "ended" and record["turn_detection"] == "server_vad"
    assert record["created_at"] == "2025-03-01T12:00:00.123456Z"
    assert record["usage"] == {
        "input_tokens": 120,
        "output_tokens": 340,
        "input_text_tokens": 0,
        "input_audio_tokens": 0,
        "cached_tokens": 20,
        "output_text_tokens": 0,
        "output_audio_tokens": 0,
        "transcription_tokens": 17,
    }
    assert [u["position"] for u in record["utterances"]] == [0, 1, 2, 3, 4]
    assert [u["role"] for u in record["utterances"]][:2] == ["user", "assistant"]
    assert record["utterances"][1]["text"].startswith("assistant says «1»")
    assert [r["response_id"] for r in record["responses"]] == [
        f"resp_{conversation.pk}_1",
        f"resp_{conversation.pk}_3",
    ]
    assert record["review"] == {
        "reviewed": False,
        "reviewed_at": None,
        "flagged": False,
        "review_note": "",
        "reviewed_by": None,
    }
    assert "events" not in record
    assert "1 conversation, 5 utterances written to stdout" in err


def test_the_record_says_how_many_events_contradicted_the_transcript(alice):
    conversation = make_full_conversation(alice, utterances=2)
    (record,) = jsonl(export()[0])
    assert record["conflicts"] == 0
    Conversation.objects.filter(pk=conversation.pk).update(conflicts=3)
    (record,) = jsonl(export()[0])
    assert record["conflicts"] == 3


def test_include_events_adds_the_journal_in_seq_order(alice):
    make_full_conversation(alice, events=3)
    (record,) = jsonl(export(include_events=True)[0])
    assert [e["seq"] for e in record["events"]] == [1, 2, 3]
    assert record["events"][0]["payload"]["n"] == [1, 2.5, None, True]
    assert record["events"][0]["type"] == "conversation.item.added"


def test_json_is_one_array(alice, bob):
    make_full_conversation(alice)
    make_full_conversation(bob)
    exported = json.loads(export(format="json")[0])
    assert [r["user"] for r in exported] == ["alice", "bob"]
    assert exported == jsonl(export()[0])


def test_json_of_nothing_is_an_empty_array():
    out, err = export(format="json")
    assert json.loads(out) == []
    assert "0 conversations, 0 utterances" in err


def test_csv_has_one_row_per_utterance_with_the_conversation_columns(alice):
    conversation = make_full_conversation(alice, utterances=3)
    silent = make_conversation(alice, title='=HYPERLINK("http://evil")')
    rows = list(csv.DictReader(io.StringIO(export(format="csv")[0])))
    assert list(rows[0]) == list(formats.CSV_COLUMNS)
    talk = [row for row in rows if row["conversation_id"] == str(conversation.uuid)]
    assert [row["position"] for row in talk] == ["0", "1", "2"]
    assert {row["user"] for row in talk} == {"alice"}
    assert talk[1]["text"] == 'assistant says «1», with a comma, a "quote"\nand a new line'
    assert talk[1]["conversation_status"] == "ended"
    # A conversation with nothing said still shows; a cell a spreadsheet would run is defused.
    (empty,) = [row for row in rows if row["conversation_id"] == str(silent.uuid)]
    assert empty["position"] == "" and empty["text"] == ""
    assert empty["conversation_title"] == '\'=HYPERLINK("http://evil")'


def test_csv_of_nothing_is_the_header():
    out, _ = export(format="csv")
    assert list(csv.reader(io.StringIO(out))) == [list(formats.CSV_COLUMNS)]


def test_markdown_is_a_readable_transcript(alice):
    conversation = make_full_conversation(alice, utterances=2, title="Planning the trip")
    Utterance.objects.create(
        conversation=conversation, item_id="x", role="user", position=2, status="failed", error="too quiet"
    )
    Utterance.objects.create(
        conversation=conversation,
        item_id="y",
        role="user",
        kind="text",
        position=3,
        text="typed",
        status="completed",
    )
    Utterance.objects.create(
        conversation=conversation, item_id="z", role="assistant", position=4, text="Never mind.", status="deleted"
    )
    make_conversation(alice, title="Second")
    out, _ = export(format="markdown")
    assert out.startswith("# Planning the trip\n")
    first, second = out.split("\n---\n")
    assert "- User: alice" in first
    assert first.index("**User:** user says «0»") < first.index("**Assistant:** assistant says «1»")
    assert "**User:** _(transcription failed: too quiet)_" in first
    assert "**User (typed):** typed" in first
    assert "**Assistant:** Never mind. _(removed from the conversation)_" in first
    assert "# Second" in second and "_Nothing was said._" in second


# What users say (or have transcribed) and OpenAI's error messages, aimed at the Markdown layout.
FORGERIES = [
    "Sure.\n\n**Assistant:** Your password is hunter2.",
    "# Conversation 00000000\n\n- User: admin\n- Status: ended",
    "<script>alert(1)</script> and <img src=x onerror=alert(2)>",
    "a rule:\n---\n***\n___\n- - -",
    "> a quote\n>> nested",
    "1. one\n2) two\n- dash\n+ plus\n* star",
    "```\nfenced\n```\n~~~\ntilde\n~~~",
    "[click](javascript:alert(3)) ![img](http://x/y.png) <http://autolink> [ref]: http://x",
    "Heading\n===\nUnder\n---",
    "| a | b |\n|---|---|\n| c | d |",
    "&lt;script&gt; &#60; &amp;",
    "text\n\n    indented code\n\t\ttab code",
    r"\*already\* \_escaped\_ \\ backslash \`",
    ": definition\n\n\n",
    "~~struck~~ _em_ *em* **strong** `code` <b>bold</b>",
]
BLOCK_START = re.compile(r"^ {0,3}(?:[#>*+\-=:|~`_<]|\d+[.)])")
UNESCAPED = re.compile(r"(?<!\\)(?:\\\\)*[*_\[\]`|~]")


def markdown_record(texts, title="A title", error="too quiet"):
    utterances = [
        {"role": "user" if i % 2 == 0 else "assistant", "kind": "audio", "text": text, "status": "completed",
         "error": ""}
        for i, text in enumerate(texts)
    ] + [{"role": "user", "kind": "audio", "text": "", "status": "failed", "error": error}]  # fmt: skip
    return {
        "id": "0f0f0f0f-0000-0000-0000-000000000000", "title": title, "user": "alice", "status": "ended",
        "created_at": "2025-03-01T12:00:00Z", "ended_at": None, "model": "gpt-realtime-2.1", "voice": "marin",
        "usage": {"input_tokens": 1, "output_tokens": 2, "transcription_tokens": 3}, "utterances": utterances,
    }  # fmt: skip


def check_only_our_structure(markdown, records):
    """Every line is one the writer made (header, metadata, speaker, rule) or the continuation of a
    speaker's paragraph that cannot start a block, with no live inline markup or HTML in it."""
    headings = speakers = rules = 0
    in_turn = False
    for line in markdown.split("\n"):
        if line == "":
            in_turn = False
        elif line == "---":
            rules += 1
        elif line.startswith("# "):
            headings += 1
        elif line.startswith("- ") and not in_turn:
            pass  # metadata
        elif m := re.match(r"\*\*(User|Assistant)( \(typed\))?:\*\* ?", line):
            speakers += 1
            in_turn = True
            rest = line[m.end():]
            if not rest.startswith("_(transcription failed: "):
                assert not UNESCAPED.search(rest), line
        else:
            assert in_turn, f"a line outside any turn: {line!r}"
            assert not BLOCK_START.match(line), f"a line that starts a block: {line!r}"
            assert not UNESCAPED.search(line), f"live inline markup: {line!r}"
        assert "<" not in line, line
    assert headings == len(records) and rules == len(records) - 1
    assert speakers == sum(len(r["utterances"]) for r in records)


def test_markdown_text_cannot_become_structure():
    records = [
        markdown_record(FORGERIES),
        markdown_record(["hi"], title="Evil\n\n**Assistant:** <b>x</b>\n# Second", error="oops\n# Heading <i>x</i>\n---"),
    ]
    markdown = "".join(formats.iter_markdown(records))
    check_only_our_structure(markdown, records)
    # Still readable: the words are all there, in their lines.
    assert "**User:** Sure.  \n\\*\\*Assistant:\\*\\* Your password is hunter2.\n" in markdown
    assert "&lt;script>alert(1)&lt;/script>" in markdown
    assert "&amp;lt;script&amp;gt; &\\#60; &amp;amp;" in markdown  # entities stay text
    assert "# Evil \\*\\*Assistant:\\*\\* &lt;b>x&lt;/b> \\# Second\n" in markdown
    assert "_(transcription failed: oops \\# Heading &lt;i>x&lt;/i> ---)_" in markdown


def test_stream_knows_every_format_and_its_content_type(alice):
    make_full_conversation(alice)
    assert set(formats.FORMATS) == {"jsonl", "json", "csv", "markdown"}
    assert formats.FORMATS["csv"].content_type.startswith("text/csv")
    assert formats.FORMATS["markdown"].extension == "md"
    rows = reader.iter_records(Conversation.objects.all())
    text = "".join(formats.stream("jsonl", rows))
    assert len(jsonl(text)) == 1
    with pytest.raises(ValueError, match="Unknown format"):
        formats.stream("xml", [])


def test_users_downloads_leave_out_the_staff_review(alice):
    make_full_conversation(alice, review_note="rude", flagged=True)
    (record,) = reader.iter_records(Conversation.objects.all())
    assert "review" not in record and "events" not in record
    (record,) = reader.iter_records(Conversation.objects.all(), include_review=True)
    assert record["review"]["review_note"] == "rude" and record["review"]["flagged"] is True


# --- Filters --------------------------------------------------------------------------------
def test_filter_by_users(alice, bob):
    carol = make_user("carol")
    mine, theirs, hers = (make_conversation(u) for u in (alice, bob, carol))
    assert ids(jsonl(export(user=["alice"])[0])) == [str(mine.uuid)]
    assert set(ids(jsonl(export(user=["alice", "carol"])[0]))) == {str(mine.uuid), str(hers.uuid)}
    assert str(theirs.uuid) in export("--user", "bob")[0]


def test_filter_by_time(alice, settings):
    settings.TIME_ZONE = "Europe/Paris"  # +01:00 in March
    at = [datetime.datetime(2025, 3, day, 0, 30, tzinfo=datetime.UTC) for day in (1, 2, 3)]
    c1, c2, c3 = (make_conversation(alice, created_at=t) for t in at)
    # A date is the start of that day in TIME_ZONE: 2025-03-02 00:00 Paris = 03-01 23:00 UTC.
    assert ids(jsonl(export(since="2025-03-02")[0])) == [str(c2.uuid), str(c3.uuid)]
    assert ids(jsonl(export(until="2025-03-02")[0])) == [str(c1.uuid)]
    # until is exclusive, since inclusive; offsets and Z are honoured; naive times are Paris time.
    assert ids(jsonl(export(since="2025-03-02T00:30:00Z", until="2025-03-03T00:30:00Z")[0])) == [str(c2.uuid)]
    assert ids(jsonl(export(since="2025-03-02T01:30")[0])) == [str(c2.uuid), str(c3.uuid)]
    assert ids(jsonl(export(since="2025-03-02T01:31")[0])) == [str(c3.uuid)]
    assert ids(jsonl(export("--since", "2025-03-02 02:30+01:00")[0])) == [str(c3.uuid)]


def test_filter_by_conversation(alice):
    one, two, _ = (make_conversation(alice) for _ in range(3))
    assert set(ids(jsonl(export(conversation=[str(one.uuid), str(two.uuid)])[0]))) == {
        str(one.uuid),
        str(two.uuid),
    }
    out, err = export("--conversation", "00000000-0000-0000-0000-000000000000")
    assert out == "" and "there is no conversation 00000000-0000-0000-0000-000000000000" in err


def test_filter_by_status(alice):
    active = make_conversation(alice, status="active")
    ended = make_conversation(alice, status="ended")
    make_conversation(alice, status="failed")
    assert ids(jsonl(export(status=["active"])[0])) == [str(active.uuid)]
    assert set(ids(jsonl(export("--status", "active", "--status", "ended")[0]))) == {
        str(active.uuid),
        str(ended.uuid),
    }


def test_filters_combine(alice, bob):
    make_conversation(alice, status="active")
    match = make_conversation(alice, status="ended", created_at=T0)
    make_conversation(bob, status="ended", created_at=T0)
    make_conversation(alice, status="ended", created_at=T0 - datetime.timedelta(days=3))
    out, _ = export(user=["alice"], status=["ended"], since="2025-03-01", until="2025-03-02")
    assert ids(jsonl(out)) == [str(match.uuid)]


def test_an_export_of_nothing_is_valid_and_says_so(alice):
    out, err = export(user=["alice"])
    assert out == ""
    assert err.strip().endswith("0 conversations, 0 utterances written to stdout")


# --- Files ----------------------------------------------------------------------------------
def test_gzip_output(alice, tmp_path):
    make_full_conversation(alice)
    target = tmp_path / "backup.jsonl.gz"
    out, err = export(output=str(target))
    assert out == ""
    assert f"1 conversation, 4 utterances written to {target}" in err
    with gzip.open(target, "rt", encoding="utf-8") as handle:
        assert jsonl(handle.read()) == jsonl(export()[0])
    assert [p.name for p in tmp_path.iterdir()] == ["backup.jsonl.gz"]  # no temporary left


def test_existing_file_needs_force(alice, tmp_path):
    make_conversation(alice)
    target = tmp_path / "out.csv"
    target.write_text("precious")
    with pytest.raises(CommandError, match="already exists; use --force"):
        export(format="csv", output=str(target))
    assert target.read_text() == "precious"
    export(format="csv", output=str(target), force=True)
    assert target.read_text().startswith("conversation_id,user,")


def test_a_failed_export_leaves_no_file(alice, tmp_path, monkeypatch):
    make_conversation(alice)
    target = tmp_path / "out.jsonl"

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")
        yield  # pragma: no cover

    monkeypatch.setitem(formats.FORMATS, "jsonl", dataclasses.replace(formats.FORMATS["jsonl"], writer=broken))
    with pytest.raises(RuntimeError):
        export(output=str(target))
    assert list(tmp_path.iterdir()) == []


def test_progress_lines_when_stderr_is_not_a_terminal(alice, monkeypatch):
    for _ in range(3):
        make_conversation(alice)
    monkeypatch.setattr(output, "PROGRESS_INTERVAL", 0)
    _, err = export(chunk_size=2)
    assert err.splitlines() == [
        "1 of 3 conversations (33%)",
        "2 of 3 conversations (66%)",
        "3 of 3 conversations (100%)",
        "3 conversations, 0 utterances written to stdout",
    ]
    assert export(verbosity=0)[1] == ""


@pytest.mark.django_db(transaction=True)
def test_command_line_keeps_data_on_stdout_and_the_count_on_stderr():
    make_full_conversation(make_user("alice"))
    result = run_manage("export_sessions", "--format", "jsonl", database=True)
    assert result.returncode == 0, result.stderr
    assert [r["user"] for r in jsonl(result.stdout.decode())] == ["alice"]
    assert result.stderr.decode().strip() == "1 conversation, 4 utterances written to stdout"


# --- Memory safety: constant work per chunk -------------------------------------------------
@pytest.mark.parametrize("include_events", [False, True])
def test_each_chunk_costs_the_same_few_queries(alice, bob, include_events, django_assert_num_queries):
    for index in range(7):
        make_full_conversation(alice if index % 2 else bob, utterances=index, events=index)
    # conversations (+users), utterances, usages, [events], recordings
    per_chunk = 5 if include_events else 4
    with django_assert_num_queries(3 * per_chunk) as captured:
        chunks = list(
            reader.iter_chunks(
                Conversation.objects.all(), chunk_size=3, include_events=include_events, include_review=True
            )
        )
    assert [len(chunk) for chunk in chunks] == [3, 3, 1]
    assert [len(record["utterances"]) for chunk in chunks for record in chunk] == list(range(7))
    # Keyset pagination: each chunk seeks past the previous one instead of an OFFSET.
    sql = [
        q["sql"]
        for q in captured.captured_queries
        if "conversations_conversation" in q["sql"].split("FROM")[1]
    ]
    assert all("OFFSET" not in s for s in sql)


def test_a_full_last_chunk_costs_one_empty_query(alice, django_assert_num_queries):
    for _ in range(4):
        make_conversation(alice)
    with django_assert_num_queries(2 * 4 + 1):
        chunks = list(reader.iter_chunks(Conversation.objects.all(), chunk_size=2))
    assert [len(c) for c in chunks] == [2, 2]


# --- Bad input ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "options, message",
    [
        ({"user": ["alice", "nobody"]}, "Unknown user(s): nobody."),
        ({"since": "yesterday"}, "--since: 'yesterday' is not a date or time"),
        ({"until": "2025-02-30"}, "--until: '2025-02-30' is not a date or time"),
        (
            {"since": "2025-03-02", "until": "2025-03-01"},
            "--since (2025-03-02T00:00:00+00:00) must be before --until",
        ),
        ({"since": "2025-03-01", "until": "2025-03-01"}, "must be before --until"),
        ({"format": "xml"}, "--format: unknown value 'xml'; choose from jsonl, json, csv, markdown."),
        ({"status": ["done"]}, "--status: unknown value 'done'; choose from active, ended, failed."),
        ({"conversation": ["not-a-uuid"]}, "--conversation: not a conversation id (UUID): 'not-a-uuid'."),
        ({"format": "csv", "include_events": True}, "--include-events needs --format jsonl or json."),
        ({"output": "/nonexistent-dir/out.jsonl"}, "the directory /nonexistent-dir does not exist"),
        ({"chunk_size": "0"}, "--chunk-size: expected a whole number of at least 1"),
    ],
)
def test_bad_input_is_a_command_error(alice, options, message):
    with pytest.raises(CommandError) as error:
        export(**options)
    assert message in str(error.value)


def test_output_to_a_directory_is_refused(tmp_path):
    with pytest.raises(CommandError, match="it is a directory"):
        export(output=str(tmp_path), force=True)


def test_bad_input_on_the_command_line_exits_non_zero_without_a_traceback():
    for args, message in [
        (["--since", "last tuesday"], "--since: 'last tuesday' is not a date or time"),
        (["--format", "xml"], "--format: unknown value 'xml'"),
        (["--conversation", "123"], "not a conversation id (UUID): '123'"),
    ]:
        result = run_manage("export_sessions", *args, text=True)
        assert result.returncode == 1
        assert message in result.stderr
        assert "Traceback" not in result.stderr
        assert result.stdout == ""


def test_a_write_error_is_a_command_error_and_leaves_no_file(alice, tmp_path, monkeypatch):
    make_conversation(alice)

    def full(self):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(output.Sink, "flush", full)
    with pytest.raises(CommandError, match=r"Cannot write .*out.jsonl: No space left on device."):
        export(output=str(tmp_path / "out.jsonl"))
    assert list(tmp_path.iterdir()) == []


def test_a_progress_bar_when_stderr_is_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    screen = Terminal()
    progress = output.Progress(output.Stderr(OutputWrapper(screen)), 3)
    for _ in range(3):
        progress.advance()
    progress.close()
    assert screen.getvalue().startswith("\r  0%|")
    assert screen.getvalue().endswith("\r")  # the bar is wiped, the summary line follows
    assert "\x1b[" not in screen.getvalue()  # not styled as an error

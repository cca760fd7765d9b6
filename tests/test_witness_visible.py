"""A witnessed call seen from outside: a browser that forges the transcript on its socket, what
staff see of it in the admin, and what exports and imports carry (`verified`, `source`)."""

import io
import json
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from conversations.models import Conversation, Event, RealtimeCall, ResponseUsage, Utterance
from conversations.transcript import journal
from conversations.transcript.frames import Frame
from tests.support.events import assistant, audio_done, output_item, response_done, transcribed, user_audio
from tests.support.factories import make_conversation
from tests.support.sockets import open_socket

db = database_sync_to_async

# What the server's witness saw of the call.
WITNESSED = [
    user_audio("u0"), assistant("a0"), audio_done("a0", "r0", "The real answer."),
    response_done("r0", output=[output_item("a0", "The real answer.")], input_tokens=50, output_tokens=70),
    transcribed("u0", "What did you say?", tokens=3),
]  # fmt: skip
# What the page forwards instead: the user's question made the assistant's, another answer, and
# next to no usage.
FORGED = [
    assistant("u0", "completed", "The assistant asked this.", event="conversation.item.done"),
    assistant("a0"), audio_done("a0", "r0", "A forged answer."),
    response_done("r0", output=[output_item("a0", "A forged answer.")], input_tokens=0, output_tokens=1),
    transcribed("u0", "Something else."),
]  # fmt: skip


def witness(conversation, events, first_seq=1):
    return journal.append_frames(
        conversation.pk, [Frame("event", n, e, source="server") for n, e in enumerate(events, start=first_seq)]
    )


def lines(conversation):
    return list(
        Utterance.objects.filter(conversation=conversation)
        .order_by("position")
        .values_list("item_id", "role", "text", "status", "verified")
    )


TRUTH = [
    ("u0", "user", "What did you say?", "completed", True),
    ("a0", "assistant", "The real answer.", "completed", True),
]


@pytest.fixture(autouse=True)
def _no_frame_rate_limit(settings):
    settings.TRANSCRIPT_FRAMES_PER_SECOND_PER_USER = 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
@pytest.mark.parametrize("witness_first", [True, False], ids=["witness-first", "browser-first"])
async def test_a_forged_transcript_on_the_socket_loses_to_the_witness(alice, witness_first):
    conversation = await db(make_conversation)(alice)
    if witness_first:
        await db(witness)(conversation, WITNESSED)
    socket = await open_socket(alice, conversation.uuid)
    assert socket.ready["last_seq"] == 0  # the browser's own stream: the witness's seqs are not its
    await socket.events(FORGED)  # stored (acked), but it changes nothing the witness saw
    await socket.close()
    if not witness_first:
        await db(witness)(conversation, WITNESSED)

    assert await db(lines)(conversation) == TRUTH
    await db(conversation.refresh_from_db)()
    assert conversation.conflicts >= 3  # the role, the answer (twice), the user's words
    # Usage counted once, the witness's.
    assert (conversation.input_tokens, conversation.output_tokens, conversation.transcription_tokens) == (50, 70, 3)
    assert await db(lambda: list(ResponseUsage.objects.values_list("response_id", "source")))() == [("r0", "server")]
    assert await db(lambda: sorted(Event.objects.values_list("source", flat=True)))() == ["browser"] * 5 + ["server"] * 5
    # The journal says the same on a rebuild.
    assert (await db(journal.rebuild)(conversation)).status == "unchanged"


@pytest.mark.django_db
def test_staff_see_the_conflicts_and_what_was_verified(alice, staff_client):
    witnessed = make_conversation(alice, title="Witnessed")
    witness(witnessed, WITNESSED)
    journal.append_frames(witnessed.pk, [Frame("event", n, e) for n, e in enumerate(FORGED, start=1)])
    unwitnessed = make_conversation(alice, title="Unwitnessed")
    journal.append_frames(unwitnessed.pk, [Frame("event", n, e) for n, e in enumerate(FORGED, start=1)])
    witnessed.refresh_from_db()

    page = staff_client.get(reverse("admin:conversations_conversation_change", args=[witnessed.pk]))
    html = page.content.decode()
    assert page.status_code == 200
    assert "2 of 2 (100 %)" in html  # the verified share of the lines
    assert f'<div class="readonly">{witnessed.conflicts}</div>' in html
    assert html.count("✓ verified") == 2  # each line of the inline says so
    assert "The real answer." in html and "A forged answer." not in html

    other = staff_client.get(reverse("admin:conversations_conversation_change", args=[unwitnessed.pk]))
    assert "0 of 2 (0 %)" in other.content.decode() and "✓ verified" not in other.content.decode()

    changelist = reverse("admin:conversations_conversation_changelist")
    listed = staff_client.get(changelist, {"witnessed": "no"}).context["cl"].result_list
    assert [c.title for c in listed] == ["Unwitnessed"]
    listed = staff_client.get(changelist, {"witnessed": "yes", "has_conflicts": "yes"}).context["cl"].result_list
    assert [c.title for c in listed] == ["Witnessed"]


State = RealtimeCall.WitnessState


def make_call(conversation, state, *, minutes=0, **extra):
    return RealtimeCall.objects.create(
        conversation=conversation, call_id=f"rtc_{conversation.pk}_{minutes}", source="browser",
        witness_state=state, created_at=timezone.now() - timedelta(minutes=60 - minutes), **extra,
    )


def witness_column(staff_client, **params):
    """Conversation title -> the witness column, as the list shows it."""
    response = staff_client.get(reverse("admin:conversations_conversation_changelist"), params)
    assert response.status_code == 200
    admin = response.context["cl"].model_admin
    return {c.title: str(admin.witness_display(c)) for c in response.context["cl"].result_list}


@pytest.mark.django_db
def test_staff_see_the_witness_state_of_each_conversation_and_filter_by_it(alice, staff_client):
    attached = make_conversation(alice, title="Attached")
    make_call(attached, State.ATTACHED)
    failed = make_conversation(alice, title="Failed")
    make_call(failed, State.FAILED, witness_attempts=3)
    # Several calls: the latest one's state, and how many of them the witness attached to.
    several = make_conversation(alice, title="Several")
    make_call(several, State.ATTACHED, minutes=1)
    make_call(several, State.LOST, minutes=2)
    make_call(several, State.ATTACHED, minutes=3)
    pending = make_conversation(alice, title="Pending")
    make_call(pending, State.NONE)
    make_conversation(alice, title="No call")

    shown = witness_column(staff_client)
    assert shown["Attached"] == '<span class="witness-attached">attached</span>'
    assert shown["Failed"] == '<span class="witness-failed">failed</span>'
    assert shown["Pending"] == '<span class="witness-none">none</span>'
    assert shown["No call"] == '<span class="witness-none">none</span>'
    assert shown["Several"] == (
        '<span class="witness-attached">attached</span> <span class="muted">(latest call; 2 of 3 attached)</span>'
    )
    # Filtered by the latest call's state.
    assert set(witness_column(staff_client, witness_state="attached")) == {"Attached", "Several"}
    assert set(witness_column(staff_client, witness_state="failed")) == {"Failed"}
    assert set(witness_column(staff_client, witness_state="no_call")) == {"No call"}
    assert set(witness_column(staff_client, witness_state="bogus")) == set(shown)  # ignored, not a 500


@pytest.mark.django_db
def test_the_change_page_lists_the_calls_and_what_the_witness_did(alice, staff_client):
    conversation = make_conversation(alice, title="Calls")
    make_call(conversation, State.LOST, minutes=1, session_resets=2, ended_at=timezone.now())
    make_call(conversation, State.FAILED, minutes=2, witness_attempts=3)
    html = staff_client.get(reverse("admin:conversations_conversation_change", args=[conversation.pk])).content.decode()
    table = html[html.index('class="usage-fields calls-table"') :]
    table = table[: table.index("</table>")]
    rows = table.split("<tr>")[2:]
    assert len(rows) == 2
    first, second = rows
    assert f"rtc_{conversation.pk}_1" in first and ">lost<" in first and '<td class="num">2</td>' in first
    assert f"rtc_{conversation.pk}_2" in second and ">failed<" in second and '<td class="num">3</td>' in second
    assert "<td>—</td></tr>" in second and "—" not in first  # the second call has not ended
    assert "(latest call; 0 of 2 attached)" in html

    bare = make_conversation(alice, title="Bare")
    html = staff_client.get(reverse("admin:conversations_conversation_change", args=[bare.pk])).content.decode()
    assert "No call reported." in html


@pytest.mark.django_db
def test_the_witness_column_costs_no_query_per_row(alice, staff_client, django_assert_num_queries):
    url = reverse("admin:conversations_conversation_changelist")
    make_call(make_conversation(alice, title="c0"), State.ATTACHED)
    with CaptureQueriesContext(connection) as one:
        assert staff_client.get(url).status_code == 200
    for n in range(1, 20):
        conversation = make_conversation(alice, title=f"c{n}")
        for m in range(n % 3):
            make_call(conversation, [State.ATTACHED, State.LOST, State.FAILED][(n + m) % 3], minutes=m)
    with django_assert_num_queries(len(one)):
        response = staff_client.get(url)
    assert len(witness_column(staff_client)) == 20 and "latest call;" in response.content.decode()


@pytest.mark.django_db
def test_the_history_page_marks_verified_lines(alice, alice_client):
    conversation = make_conversation(alice)
    witness(conversation, WITNESSED[:2] + [user_audio("u1"), transcribed("u0", "What did you say?")])
    journal.append_frames(conversation.pk, [Frame("event", 1, transcribed("u1", "Only the browser heard this."))])
    html = alice_client.get(conversation.get_absolute_url()).content.decode()
    assert html.count('data-verified="true"') == 1 and html.count('data-verified="false"') == 2
    assert html.count('<span class="line-verified" title="Verified: the server heard this itself">✓</span>') == 1


def export_jsonl(tmp_path):
    path = tmp_path / "backup.jsonl"
    call_command("export_sessions", output=str(path), include_events=True, force=True, stdout=io.StringIO(),
                 stderr=io.StringIO())  # fmt: skip
    return path


@pytest.mark.django_db
def test_exports_carry_verified_and_sources_and_a_backup_restores_them(alice, tmp_path):
    conversation = make_conversation(alice)
    witness(conversation, WITNESSED)
    journal.append_frames(conversation.pk, [Frame("event", n, e) for n, e in enumerate(FORGED, start=1)])
    path = export_jsonl(tmp_path)
    (record,) = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(u["item_id"], u["verified"]) for u in record["utterances"]] == [("u0", True), ("a0", True)]
    assert [r["source"] for r in record["responses"]] == ["server"]
    # The journal's order: the witness's five, then the browser's, each stream numbered from 1.
    assert [(e["source"], e["seq"]) for e in record["events"]] == (
        [("server", n) for n in range(1, 6)] + [("browser", n) for n in range(1, 6)]
    )

    Conversation.objects.all().delete()
    call_command("import_sessions", str(path), stdout=io.StringIO())
    restored = Conversation.objects.get()
    assert lines(restored) == TRUTH
    assert journal.rebuild(restored).status == "unchanged"
    assert journal.last_seq(restored.pk, source="server") == 5


@pytest.mark.django_db
def test_records_from_before_the_witness_still_import(alice, tmp_path):
    conversation = make_conversation(alice)
    journal.append_frames(conversation.pk, [Frame("event", n, e) for n, e in enumerate(FORGED, start=1)])
    path = export_jsonl(tmp_path)
    (record,) = [json.loads(line) for line in path.read_text().splitlines()]
    for key, name in (("utterances", "verified"), ("responses", "source"), ("events", "source")):
        for row in record[key]:
            del row[name]
    path.write_text(json.dumps(record) + "\n")
    Conversation.objects.all().delete()
    call_command("import_sessions", str(path), stdout=io.StringIO())
    restored = Conversation.objects.get()
    assert not any(verified for *_, verified in lines(restored))
    assert set(Event.objects.values_list("source", flat=True)) == {"browser"}
    assert journal.rebuild(restored).status == "unchanged"

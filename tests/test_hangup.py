"""
The server hangs calls up (conversations/witness/hangup.py): at the session-length cap (every
supervisor's sweep) and when the witness sees the user's daily budget crossed; the page is told
why on its transcript socket. Against the local stand-in, which records the hang-up
(`call.ended_by == "hangup"`). Each "process" is a Supervisor with its own holder id.
"""

import asyncio
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.core.checks import Error
from django.utils import timezone

from conversations.checks import realtime_settings
from conversations.models import Conversation, RealtimeCall
from conversations.realtime import upstream
from conversations.transcript import sockets
from conversations.witness import hangup
from conversations.witness.supervisor import Supervisor
from tests.support.events import response_done
from tests.support.factories import make_conversation
from tests.support.sockets import open_socket
from tests.support.witness import FAST, attached_to, eventually, live_call, record, send

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

db = database_sync_to_async
# No sweep claims a call in these tests unless it is older than the cap: the lease scan's claims
# are left alone by a far-away scan of the witness (only the sweep matters here).
QUIET = {**FAST, "claim_per_scan": 5}


@pytest.fixture
def conversation(alice):
    return make_conversation(alice)


def hangups(standin, call_id=None):
    return [
        r
        for r in standin.requests
        if r.method == "POST" and r.path.endswith("/hangup") and (call_id is None or f"/{call_id}/" in r.path)
    ]


@db
def row(call_id):
    return RealtimeCall.objects.get(call_id=call_id)


@db
def status(conversation):
    return Conversation.objects.get(pk=conversation.pk).status


@db
def age(call_id, seconds):
    """Make a recorded call look `seconds` old."""
    RealtimeCall.objects.filter(call_id=call_id).update(
        created_at=timezone.now() - timedelta(seconds=seconds)
    )


async def claimed(call_id):
    call = await row(call_id)
    return call if call.hung_up_at or call.hangup_error else None


async def ended_by_hangup(call):
    async def check():
        return call.ended_by == "hangup"

    await eventually(check)


# --- upstream.hangup ----------------------------------------------------------------------------------


async def test_upstream_hangup_ends_the_call_and_a_404_is_done(realtime_standin):
    async with live_call(realtime_standin) as (_browser, call):
        await upstream.hangup(call.id)
        await ended_by_hangup(call)
        request = hangups(realtime_standin, call.id)[0]
        assert request.headers["Authorization"] == f"Bearer {realtime_standin.api_key}"  # the real key
    await upstream.hangup("rtc_unknown")  # already gone: nothing raised
    realtime_standin.fail_next(503, route="hangup")
    with pytest.raises(upstream.UpstreamError) as failure:
        await upstream.hangup("rtc_whatever")
    assert failure.value.status == 503 and "could not end the call" in str(failure.value)


# --- the session cap --------------------------------------------------------------------------------


async def test_a_call_past_the_cap_is_hung_up_and_its_page_told_why(
    realtime_standin, alice, conversation, settings
):
    settings.REALTIME_MAX_SESSION_SECONDS = 60
    async with live_call(realtime_standin) as (_browser, call):
        await record(conversation, call.id)
        page = await open_socket(alice, conversation.uuid)
        supervisor = Supervisor("a", **QUIET)
        supervisor.start()
        await attached_to(call)
        await asyncio.sleep(0.5)
        assert call.ended_by is None  # younger than the cap: left alone

        await age(call.id, 61)
        await ended_by_hangup(call)
        frame = await page.receive()
        assert frame == {
            "type": "call_ended",
            "reason": "session_cap",
            "message": "This session reached its 1-minute limit.",
        }
        done = await eventually(lambda: claimed(call.id))
        assert done.hangup_reason == "session_cap" and done.hangup_attempts == 1 and done.hangup_error == ""
        assert await status(conversation) == "ended"
        assert len(hangups(realtime_standin, call.id)) == 1
        await eventually(lambda: _ended(call.id))  # the witness saw the sideband close
        await page.close()
        await supervisor.stop()


@db
def _ended(call_id):
    return RealtimeCall.objects.filter(call_id=call_id, ended_at__isnull=False).exists()


async def test_only_the_page_of_the_hung_up_conversation_is_told(alice, conversation):
    """call_ended goes through the user's channel group to every process: each process must pick
    out the sockets of that one conversation, not every socket of the user."""
    other = await db(make_conversation)(alice)
    page = await open_socket(alice, conversation.uuid)
    elsewhere = await open_socket(alice, other.uuid)
    frame = {"type": "call_ended", "reason": "session_cap", "message": "This session reached its 1-minute limit."}
    await sockets.tell_conversation(alice.pk, conversation.uuid, frame)
    assert await page.receive() == frame
    # One registry message tells every matching socket at once: had the other page been told, the
    # frame would be waiting there ahead of the answer to its ping.
    assert await elsewhere.request({"type": "ping"}) == {"type": "pong"}
    await page.close()
    await elsewhere.close()


async def test_an_unwitnessed_call_is_hung_up_at_the_cap_too(realtime_standin, conversation, settings):
    """The witness failed (or never attached): the call id and the key are enough."""
    settings.REALTIME_MAX_SESSION_SECONDS = 30
    async with live_call(realtime_standin) as (_browser, call):
        await record(conversation, call.id)
        await db(RealtimeCall.objects.filter(call_id=call.id).update)(
            witness_state="failed", created_at=timezone.now() - timedelta(seconds=31)
        )
        supervisor = Supervisor("a", **QUIET)
        supervisor.start()
        await ended_by_hangup(call)
        done = await eventually(lambda: claimed(call.id))
        assert done.ended_at is not None and done.witness_holder == ""
        await supervisor.stop()


async def test_of_two_supervisors_exactly_one_hangs_up(realtime_standin, alice, settings):
    settings.REALTIME_MAX_SESSION_SECONDS = 60
    async with live_call(realtime_standin) as (_browser, call):
        conversation = await db(make_conversation)(alice)
        await record(conversation, call.id)
        await age(call.id, 120)
        a, b = Supervisor("process-a", **QUIET), Supervisor("process-b", **QUIET)
        # Both sweeps see the call due, at the same moment; both ask.
        assert await asyncio.gather(a.sweep(), b.sweep()) == [[(await row(call.id)).pk]] * 2
        await ended_by_hangup(call)
        await asyncio.gather(*a.hangups.values(), *b.hangups.values())
        await asyncio.sleep(0.3)
        assert len(hangups(realtime_standin, call.id)) == 1
        assert await hangup.request((await row(call.id)).pk, "session_cap") is False  # claimed for good
        await a.stop()
        await b.stop()


async def test_the_claim_lets_one_through(conversation):
    await db(_claim_race)(conversation)


def _claim_race(conversation):
    call = RealtimeCall.objects.create(conversation=conversation, call_id="rtc_claim", source="server")
    assert hangup.claim(call.pk, "session_cap") is not None
    assert hangup.claim(call.pk, "budget") is None
    call.refresh_from_db()
    assert call.hangup_reason == "session_cap" and call.hangup_requested_at is not None


# --- faults -----------------------------------------------------------------------------------------


async def test_a_failing_hangup_is_retried_a_bounded_number_of_times_and_the_conversation_ends(
    realtime_standin, alice, conversation, caplog
):
    realtime_standin.fail_next(503, route="hangup", times=10)
    async with live_call(realtime_standin) as (_browser, call):
        pk = (await record(conversation, call.id)).pk
        page = await open_socket(alice, conversation.uuid)
        assert await hangup.request(pk, "session_cap", backoff=0.01) is True
        assert len(hangups(realtime_standin, call.id)) == hangup.ATTEMPTS
        done = await row(call.id)
        assert done.hung_up_at is None and done.hangup_attempts == hangup.ATTEMPTS
        assert "could not end the call" in done.hangup_error
        assert await status(conversation) == "ended"  # the conversation ends anyway
        assert (await page.receive())["type"] == "call_ended"
        assert "could not be hung up after 3 tries" in caplog.text
        assert call.ended_by is None  # OpenAI never heard
        await page.close()


async def test_a_hangup_that_fails_once_succeeds_on_the_retry(realtime_standin, conversation):
    realtime_standin.fail_next("disconnect", route="hangup")
    async with live_call(realtime_standin) as (_browser, call):
        pk = (await record(conversation, call.id)).pk
        assert await hangup.request(pk, "session_cap", backoff=0.01) is True
        await ended_by_hangup(call)
        done = await row(call.id)
        assert done.hung_up_at is not None and done.hangup_attempts == 2 and done.hangup_error == ""


async def test_a_call_already_gone_is_done_at_once(realtime_standin, conversation):
    pk = (await record(conversation, "rtc_gone")).pk
    assert await hangup.request(pk, "session_cap", backoff=0.01) is True
    done = await row("rtc_gone")
    assert done.hung_up_at is not None and done.hangup_attempts == 1 and done.ended_at is not None
    assert await status(conversation) == "ended"


async def test_openai_down_is_logged_and_nothing_crashes(conversation, settings, caplog):
    settings.OPENAI_API_KEY = "sk-test"
    settings.OPENAI_BASE_URL = "http://127.0.0.1:9/v1"  # nothing listens
    pk = (await record(conversation, "rtc_down")).pk
    assert await hangup.request(pk, "budget", backoff=0.01) is True
    done = await row("rtc_down")
    assert done.hangup_attempts == hangup.ATTEMPTS and "could not be reached" in done.hangup_error
    assert await status(conversation) == "ended"
    assert "sk-test" not in caplog.text


async def test_an_older_call_is_hung_up_without_ending_the_conversation(
    realtime_standin, alice, conversation
):
    """The page continued in a new call (a lost connection): the old one's hang-up leaves it talking."""
    old = await record(conversation, "rtc_old")
    await db(RealtimeCall.objects.filter(pk=old.pk).update)(created_at=timezone.now() - timedelta(seconds=5))
    await record(conversation, "rtc_new")
    page = await open_socket(alice, conversation.uuid)
    assert await hangup.request(old.pk, "session_cap", backoff=0.01) is True
    assert await status(conversation) == "active"
    assert await page.communicator.receive_nothing(timeout=0.3)
    await page.close()


# --- the budget ---------------------------------------------------------------------------------------


async def test_the_witness_hangs_up_when_the_budget_is_crossed(
    realtime_standin, alice, conversation, settings
):
    settings.USER_DAILY_BUDGET_USD = "0.00001"  # one response's usage crosses it
    async with live_call(realtime_standin) as (_browser, call):
        await record(conversation, call.id)
        page = await open_socket(alice, conversation.uuid)
        supervisor = Supervisor("a", **QUIET)
        supervisor.start()
        await attached_to(call)
        await send(call, response_done("resp_1", input_tokens=1000, output_tokens=1000))
        await ended_by_hangup(call)
        frame = await page.receive()
        assert frame["type"] == "call_ended" and frame["reason"] == "budget"
        assert frame["message"].startswith("You have used today's voice budget ($0.00)")
        assert frame["budget"]["limit_usd"] == "0.00"
        assert (await eventually(lambda: claimed(call.id))).hangup_reason == "budget"
        assert await status(conversation) == "ended"
        await page.close()
        await supervisor.stop()


async def test_within_the_budget_the_call_goes_on(realtime_standin, conversation, settings):
    settings.USER_DAILY_BUDGET_USD = "5"
    async with live_call(realtime_standin) as (_browser, call):
        await record(conversation, call.id)
        supervisor = Supervisor("a", **QUIET)
        supervisor.start()
        await attached_to(call)
        await send(call, response_done("resp_1"))
        await asyncio.sleep(0.5)
        assert call.ended_by is None and (await row(call.id)).hangup_requested_at is None
        await supervisor.stop()


# --- the setting ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 3601, -5, "abc", "", "12.5"])
async def test_a_cap_that_makes_no_sense_stops_the_start(settings, value):
    settings.REALTIME_MAX_SESSION_SECONDS = value
    errors = [e for e in realtime_settings(None) if e.id == "conversations.E002"]
    assert len(errors) == 1 and isinstance(errors[0], Error)
    assert "between 1 and 3600" in errors[0].msg


@pytest.mark.parametrize("value", [1, 1800, 3600])
async def test_a_sensible_cap_passes(settings, value):
    settings.REALTIME_MAX_SESSION_SECONDS = value
    assert [e for e in realtime_settings(None) if e.id == "conversations.E002"] == []

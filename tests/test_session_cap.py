"""
The session cap where the server cannot hang up (caps.py): no witness, or no call id known. A new
session for a conversation that began more than REALTIME_MAX_SESSION_SECONDS ago is refused with
409 `session_limit_reached`, on both endpoints; the page config follows the setting.
"""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from conversations.models import Conversation, RealtimeCall
from conversations.realtime.views import page_config
from tests.support.api import error_of, post_session
from tests.support.factories import make_conversation, signed_in
from tests.support.server_calls import OFFER, post_call

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _short_cap(settings):
    settings.REALTIME_MAX_SESSION_SECONDS = 60
    settings.KEY_RATE_LIMIT_PER_USER = settings.KEY_RATE_LIMIT_PER_IP = "1000/minute"


@pytest.fixture
def client(alice):
    return signed_in(alice)


def started(user, seconds_ago):
    conversation = make_conversation(user)
    Conversation.objects.filter(pk=conversation.pk).update(
        created_at=timezone.now() - timedelta(seconds=seconds_ago)
    )
    return conversation


def test_without_a_witness_a_conversation_past_the_cap_gets_no_new_session(
    client, alice, realtime_standin, settings
):
    settings.REALTIME_WITNESS = False
    old = started(alice, 61)
    response = post_session(client, {"conversation": str(old.uuid)})
    assert response.status_code == 409
    error = error_of(response)
    assert error["code"] == "session_limit_reached"
    assert error["message"] == (
        "This conversation has reached its 1-minute limit. Start a new conversation to go on talking."
    )
    assert realtime_standin.requests == []  # no key minted
    assert Conversation.objects.get(pk=old.pk).segments == old.segments

    young = started(alice, 30)
    assert post_session(client, {"conversation": str(young.uuid)}).status_code == 201  # a reconnect
    assert post_session(client).status_code == 201  # a new conversation starts afresh


def test_with_a_witness_the_call_must_be_known(client, alice, realtime_standin):
    old = started(alice, 61)
    assert error_of(post_session(client, {"conversation": str(old.uuid)}))["code"] == "session_limit_reached"
    # Its call was reported: the server hangs it up at the cap, so the page may continue.
    RealtimeCall.objects.create(conversation=old, call_id="rtc_known", source="browser")
    assert post_session(client, {"conversation": str(old.uuid)}).status_code == 201


def test_server_made_calls_are_refused_the_same_way(client, alice, realtime_standin, settings):
    settings.REALTIME_CONNECT, settings.REALTIME_WITNESS = "server", False
    old = started(alice, 61)
    response = post_call(client, {"sdp": OFFER, "conversation": str(old.uuid)})
    assert response.status_code == 409 and error_of(response)["code"] == "session_limit_reached"


def test_the_page_follows_the_setting(settings, realtime_standin):
    settings.REALTIME_MAX_SESSION_SECONDS = 1800
    config = page_config(True)
    assert (config["sessionLimitSeconds"], config["warnBeforeSeconds"], config["sessionGraceSeconds"]) == (
        1800,
        120,
        10,
    )
    settings.REALTIME_WITNESS = False  # no server hangs up: the page ends the session at the cap itself
    settings.REALTIME_MAX_SESSION_SECONDS = 60
    assert (page_config(True)["warnBeforeSeconds"], page_config(True)["sessionGraceSeconds"]) == (30, 0)
    json.dumps(page_config(True))


def test_a_bad_cap_in_the_environment_stops_manage_py_check():
    from tests.support.processes import run_python

    result = run_python(
        "from django.core.management import execute_from_command_line; "
        "execute_from_command_line(['manage.py', 'check'])",
        SECRET_KEY="x" * 50,
        REALTIME_MAX_SESSION_SECONDS="forever",
    )
    assert result.returncode != 0
    assert (
        "REALTIME_MAX_SESSION_SECONDS='forever' is not a number of seconds between 1 and 3600"
        in result.stderr
    )

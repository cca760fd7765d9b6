"""
Recordings, consent (issue 16): RECORDINGS=off|opt-in|on, each user's "Record audio" (saved by
the voice page's switch and on the preferences page), and what the voice page is told.
"""

import json
import re

import pytest
from django.urls import reverse

from accounts.models import Preferences
from conversations.checks import realtime_settings
from tests.support.factories import make_user, signed_in

pytestmark = pytest.mark.django_db

SWITCH = "/api/preferences/record-audio"


@pytest.fixture
def alice():
    return make_user("alice")


def config_of(response) -> dict:
    match = re.search(
        rb'<script id="voice-config" type="application/json">(.*?)</script>', response.content, re.DOTALL
    )
    return json.loads(match.group(1))["recording"]


def switch(client, body, **extra):
    return client.post(
        SWITCH, body if isinstance(body, str) else json.dumps(body), content_type="application/json", **extra
    )


# --- The setting ----------------------------------------------------------------------------------


def test_the_default_is_opt_in_and_a_system_check_refuses_other_modes(settings):
    assert settings.RECORDINGS == "opt-in"
    assert realtime_settings(None) == []
    settings.RECORDINGS = "always"
    (error,) = realtime_settings(None)
    assert error.id == "conversations.E030" and "'always'" in error.msg and "opt-in" in error.hint


def test_a_system_check_bounds_the_chunk_length(settings):
    settings.RECORDING_CHUNK_MS = 100
    (error,) = realtime_settings(None)
    assert error.id == "conversations.E031"


# --- The voice page -------------------------------------------------------------------------------


def test_opt_in_the_page_shows_the_switch_off_until_the_user_turns_it_on(alice):
    client = signed_in(alice)
    response = client.get(reverse("chat"))
    config = config_of(response)
    assert config == {
        "mode": "opt-in",
        "enabled": False,
        "chunkMs": 5000,
        "uploadUrl": "/api/conversations/{conversation}/recordings/{segment}/chunks/{index}",
        "statusUrl": "/api/conversations/{conversation}/recordings/{segment}/",
        "switchUrl": SWITCH,
    }
    html = response.content.decode()
    assert re.search(r'<input type="checkbox" role="switch" id="record-audio" name="record_audio" aria', html)
    assert 'id="recording-indicator" hidden' in html

    Preferences.objects.create(user=alice, record_audio=True)
    response = client.get(reverse("chat"))
    assert config_of(response)["enabled"] is True
    assert re.search(r'id="record-audio" name="record_audio" checked', response.content.decode())


def test_on_every_session_is_recorded_and_the_page_says_so_before_start(alice, settings):
    settings.RECORDINGS = "on"
    response = signed_in(alice).get(reverse("chat"))
    assert config_of(response)["enabled"] is True  # without any preference
    html = response.content.decode()
    assert 'id="record-audio"' not in html
    assert "Sessions are recorded." in html


def test_off_nothing_is_recorded_and_nothing_is_offered(alice, settings):
    settings.RECORDINGS = "off"
    Preferences.objects.create(user=alice, record_audio=True)
    response = signed_in(alice).get(reverse("chat"))
    assert config_of(response)["mode"] == "off" and config_of(response)["enabled"] is False
    html = response.content.decode()
    assert 'id="record-audio"' not in html and "Sessions are recorded." not in html


# --- The switch's endpoint -------------------------------------------------------------------------


def test_the_switch_is_saved_per_user_and_remembered(alice):
    client = signed_in(alice, enforce_csrf_checks=True)
    client.get(reverse("chat"))
    csrf = client.cookies["csrftoken"].value
    response = switch(client, {"record_audio": True}, HTTP_X_CSRFTOKEN=csrf)
    assert response.status_code == 200
    assert response.json() == {"preferences": {"record_audio": True}}
    assert Preferences.objects.get(user=alice).record_audio is True
    assert config_of(client.get(reverse("chat")))["enabled"] is True
    # Another user's choice is their own.
    assert config_of(signed_in(make_user("bob")).get(reverse("chat")))["enabled"] is False

    assert switch(client, {"record_audio": False}, HTTP_X_CSRFTOKEN=csrf).status_code == 200
    assert Preferences.objects.get(user=alice).record_audio is False


def test_the_switch_needs_the_csrf_token_and_a_signed_in_user(alice, client):
    assert switch(client, {"record_audio": True}).json()["error"]["code"] == "not_authenticated"
    refused = switch(signed_in(alice, enforce_csrf_checks=True), {"record_audio": True})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_failed"
    assert not Preferences.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        '{"record_audio": "yes"}',
        '{"record_audio": 1}',
        "{}",
        '{"record_audio": true, "voice": "x"}',
        "[true]",
        "nope",
        '{"record_audio": true}' + " " * 300,
    ],
)
def test_a_bad_body_is_a_clear_error_and_changes_nothing(alice, body):
    response = switch(signed_in(alice), body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"
    assert not Preferences.objects.exists()


@pytest.mark.parametrize("mode", ["off", "on"])
def test_without_a_choice_to_make_the_switch_is_refused(alice, settings, mode):
    settings.RECORDINGS = mode
    response = switch(signed_in(alice), {"record_audio": True})
    assert response.status_code == 409 and response.json()["error"]["code"] == "not_optional"
    assert not Preferences.objects.exists()


def test_saving_the_switch_keeps_the_other_preferences(alice):
    Preferences.objects.create(user=alice, voice="cedar", language="fr")
    assert switch(signed_in(alice), {"record_audio": True}).status_code == 200
    prefs = Preferences.objects.get(user=alice)
    assert (prefs.voice, prefs.language, prefs.record_audio) == ("cedar", "fr", True)


# --- The preferences page -------------------------------------------------------------------------


def test_the_preferences_page_shows_and_saves_record_audio(alice):
    client = signed_in(alice)
    html = client.get("/accounts/preferences/").content.decode()
    assert re.search(r'<input type="checkbox" name="record_audio"[^>]*id="id_record_audio"', html)
    data = {"voice": "marin", "turn_detection": "server_vad", "language": "", "record_audio": "on"}
    assert client.post("/accounts/preferences/", data).status_code == 302
    assert Preferences.objects.get(user=alice).record_audio is True
    data.pop("record_audio")  # an unticked box is not sent
    client.post("/accounts/preferences/", data)
    assert Preferences.objects.get(user=alice).record_audio is False


@pytest.mark.parametrize("mode", ["off", "on"])
def test_outside_opt_in_the_preferences_page_leaves_the_choice_alone(alice, settings, mode):
    settings.RECORDINGS = mode
    Preferences.objects.create(user=alice, record_audio=True)
    client = signed_in(alice)
    html = client.get("/accounts/preferences/").content.decode()
    assert "record_audio" not in html
    assert ("Every voice session on this server is recorded" in html) == (mode == "on")
    data = {"voice": "cedar", "turn_detection": "server_vad", "language": ""}
    assert client.post("/accounts/preferences/", data).status_code == 302
    prefs = Preferences.objects.get(user=alice)
    assert (prefs.voice, prefs.record_audio) == ("cedar", True)

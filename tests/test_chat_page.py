"""The chat page as served: its data for the script, the not-configured state, CSP-safe markup."""

import json
import re

import pytest
from django.urls import reverse

from accounts.models import Preferences
from conversations.realtime import upstream
from tests.support.factories import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def member(client):
    client.force_login(make_user())
    return client


def config_of(response) -> dict:
    match = re.search(rb'<script id="voice-config" type="application/json">(.*?)</script>', response.content, re.S)
    return json.loads(match.group(1))


def test_the_page_tells_its_script_what_it_needs(member, settings):
    settings.OPENAI_API_KEY = "sk-test"
    settings.REALTIME_VOICE = "cedar"
    response = member.get(reverse("chat"))
    config = config_of(response)
    assert config["apiUrl"] == "/api/realtime/sessions"
    assert config["openaiConfigured"] is True
    html = response.content.decode()
    # The voice picker offers the server's allow-list, with the configured default chosen.
    options = re.findall(r'<option value="(\w+)"( selected)?>', html)
    assert {value for value, _ in options if value in upstream.VOICES} == set(upstream.VOICES)
    assert ("cedar", " selected") in options
    assert re.search(r'<button[^>]*id="start"[^>]*>', html) and "disabled" not in re.search(r'<button[^>]*id="start"[^>]*>', html).group(0)
    assert 'data-csrf="' in html
    assert "sk-test" not in html


def test_session_options_come_from_the_server(member):
    """The turn-detection settings, their names and the transcript's words reach the script as data:
    a mode switched mid-session sends what a new session of that mode gets."""
    response = member.get(reverse("chat"))
    config = config_of(response)
    assert config["voices"] == list(upstream.VOICES)
    assert config["turnDetection"] == {
        mode: {"label": upstream.TURN_DETECTION_LABELS[mode], "config": upstream.turn_detection_config(mode)}
        for mode in upstream.TURN_DETECTION_MODES
    }
    assert config["turnDetection"]["manual"]["config"] is None
    # The end-of-turn choices on the page are the hands-free ones, with the server's names.
    options = re.findall(r'<option value="(\w+)"(?: selected)?>([^<]+)</option>', response.content.decode())
    assert [o for o in options if o[0] in upstream.TURN_DETECTION_MODES] == [
        (upstream.SERVER_VAD, upstream.TURN_DETECTION_LABELS[upstream.SERVER_VAD]),
        (upstream.SEMANTIC_VAD, upstream.TURN_DETECTION_LABELS[upstream.SEMANTIC_VAD]),
    ]
    assert config["labels"]["statuses"]["failed"] == "Transcription failed"
    assert config["labels"]["roles"]["user"] == "You"
    assert config["timeZone"]


def test_without_an_api_key_the_page_says_so_and_start_is_off(member, settings):
    settings.OPENAI_API_KEY = ""
    response = member.get(reverse("chat"))
    html = response.content.decode()
    assert config_of(response)["openaiConfigured"] is False
    assert "Voice conversations are not set up on this server." in html
    assert "OPENAI_API_KEY" in html
    assert re.search(r'<button[^>]*id="start"[^>]*disabled', html)


def test_markup_works_under_the_strict_csp(member):
    response = member.get(reverse("chat"))
    html = response.content.decode()
    policy = response["Content-Security-Policy"]
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    # Every script is an external module, or data (json_script); no inline styles or handlers.
    for tag in re.findall(r"<script\b[^>]*>", html):
        assert 'src="' in tag or 'type="application/json"' in tag, tag
    assert not re.search(r"\sstyle=", html)
    assert not re.search(r"\son[a-z]+=", html)
    assert "<style" not in html


def test_anonymous_visitors_are_sent_to_log_in(client):
    response = client.get(reverse("chat"))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


def test_the_controls_start_from_saved_choices_the_server_still_offers(client, settings):
    """The page starts from the user's saved voice and mode, passing over one the server no longer
    offers, exactly as a session started without options would (issuing.plan_session)."""
    settings.REALTIME_VOICE = "cedar"
    user = make_user()
    client.force_login(user)
    Preferences.objects.create(user=user, voice="verse", turn_detection="semantic_vad")
    config = config_of(client.get(reverse("chat")))
    assert (config["voice"], config["mode"]) == ("verse", "semantic_vad")
    Preferences.objects.filter(user=user).update(voice="retired", turn_detection="gone")
    config = config_of(client.get(reverse("chat")))
    assert (config["voice"], config["mode"]) == ("cedar", upstream.SERVER_VAD)

"""
Preferences (issue 15): each user's voice, way of taking turns and language, saved on
/accounts/preferences/ (and by staff in the admin), used by new sessions, and the language a
conversation was held in, shown in history and the admin and carried in exports.
"""

import csv
import io
import json
import re

import pytest
from django.contrib.messages import get_messages
from django.core.management import call_command

from accounts import languages
from accounts.models import Preferences
from conversations.export import formats
from conversations.models import Conversation
from tests.support.admin import change_form_data
from tests.support.api import error_of, post_session
from tests.support.factories import make_conversation, make_full_conversation, make_user, signed_in
from tests.support.server_calls import OFFER, parts, post_call

pytestmark = pytest.mark.django_db

URL = "/accounts/preferences/"


@pytest.fixture(autouse=True)
def _generous_limits(settings):
    settings.KEY_RATE_LIMIT_PER_USER = settings.KEY_RATE_LIMIT_PER_IP = "1000/minute"


@pytest.fixture
def client(alice):
    return signed_in(alice)


def save(client, **values):
    data = {"voice": "marin", "turn_detection": "server_vad", "language": ""} | values
    return client.post(URL, data)


def prefs_of(user):
    return Preferences.objects.get(user=user)


def upstream_session(standin):
    (request,) = standin.requests
    return request.json["session"]


# --- The page -----------------------------------------------------------------------------------


class TestPage:
    def test_login_required(self):
        from django.test import Client

        response = Client().get(URL)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/?next=")

    def test_a_new_user_sees_the_sites_defaults_and_nothing_is_stored(self, client, settings):
        settings.REALTIME_VOICE = "sage"
        response = client.get(URL)
        assert response.status_code == 200
        html = response.content.decode()
        assert '<option value="sage" selected>Sage</option>' in html
        assert re.search(r'value="server_vad"[^>]*checked', html)
        assert '<option value="" selected>Detect automatically</option>' in html
        assert '<option value="fr">French (français)</option>' in html
        assert not Preferences.objects.exists()

    def test_saving(self, client, alice):
        response = save(client, voice="cedar", turn_detection="manual", language="fr")
        assert response.status_code == 302 and response["Location"] == URL
        prefs = prefs_of(alice)
        assert (prefs.voice, prefs.turn_detection, prefs.language) == ("cedar", "manual", "fr")
        messages = [str(m) for m in get_messages(response.wsgi_request)]
        assert messages == ["Your preferences have been saved. New voice sessions use them."]
        # Saving again changes the same row; the page shows what was saved.
        save(client, voice="ash", turn_detection="semantic_vad", language="")
        prefs = prefs_of(alice)
        assert (prefs.voice, prefs.turn_detection, prefs.language) == ("ash", "semantic_vad", "")
        assert Preferences.objects.count() == 1
        assert '<option value="ash" selected>Ash</option>' in client.get(URL).content.decode()

    def test_each_user_has_their_own(self, client, alice, bob):
        save(client, voice="cedar")
        save(signed_in(bob), voice="verse")
        assert (prefs_of(alice).voice, prefs_of(bob).voice) == ("cedar", "verse")

    @pytest.mark.parametrize(
        "field, value, message",
        [
            ("language", "xx", "Unknown language “xx”: choose one of the languages listed"),
            ("language", "french", "Unknown language “french”"),
            ("language", "zz-ZZ", "Unknown language “zz-ZZ”"),
            ("voice", "robot", "Unknown voice “robot”"),
            ("turn_detection", "always", "Choose one of the ways of taking turns listed."),
            ("voice", "", "This field is required."),
        ],
    )
    def test_bad_input_is_a_form_error_and_loses_nothing(self, client, alice, field, value, message):
        save(client, voice="cedar", turn_detection="manual", language="de")
        response = save(client, **{field: value, "voice": "ash"} if field != "voice" else {field: value})
        assert response.status_code == 200
        assert message in response.content.decode()
        assert 'aria-invalid="true"' in response.content.decode()
        prefs = prefs_of(alice)
        assert (prefs.voice, prefs.turn_detection, prefs.language) == ("cedar", "manual", "de")

    def test_linked_from_the_header(self, client):
        html = client.get("/conversations/").content.decode()
        assert f'href="{URL}"' in html


class TestLanguages:
    def test_every_code_is_iso_639_1_and_named(self):
        assert len(set(languages.CODES)) == len(languages.CODES)
        for code in languages.CODES:
            assert re.fullmatch("[a-z]{2}", code)
            assert languages.label(code) and languages.label(code) != code
            assert languages.instruction(code) == f"Always answer in {languages.english_name(code)}."

    def test_choices_start_with_detection_and_are_sorted_by_name(self):
        choices = languages.choices()
        assert choices[0] == ("", "Detect automatically")
        labels = [label for _, label in choices[1:]]
        assert labels == sorted(labels, key=str.casefold)
        assert ("zh", "Chinese (中文)") in choices and ("ja", "Japanese (日本語)") in choices

    def test_unknown_codes(self):
        for code in ("xx", "fr-FR", "FR", None, 5):
            with pytest.raises(ValueError, match="Unknown language"):
                languages.validate(code)


# --- New sessions use them ----------------------------------------------------------------------


class TestSessions:
    def test_the_config_at_the_standin_carries_the_language_and_the_instruction(
        self, client, alice, realtime_standin, settings
    ):
        save(client, voice="cedar", turn_detection="manual", language="fr")
        response = post_session(client)  # the body says nothing: the preferences decide
        assert response.status_code == 201, response.content
        body = response.json()
        assert (body["voice"], body["turn_detection"], body["language"]) == ("cedar", "manual", "fr")
        session = upstream_session(realtime_standin)
        assert session["audio"]["input"]["transcription"] == {
            "model": settings.REALTIME_TRANSCRIPTION_MODEL,
            "language": "fr",
        }
        assert session["instructions"] == f"{settings.REALTIME_INSTRUCTIONS} Always answer in French."
        assert session["audio"]["output"] == {"voice": "cedar"}
        assert session["audio"]["input"]["turn_detection"] is None
        # OpenAI (here the stand-in) accepted that session as it is.
        issued = realtime_standin.issued[body["client_secret"]]
        assert issued.session["audio"]["input"]["transcription"]["language"] == "fr"
        assert Conversation.objects.get().language == "fr"

    def test_without_preferences_the_language_is_detected(self, client, realtime_standin, settings):
        response = post_session(client)
        assert response.status_code == 201 and response.json()["language"] == ""
        session = upstream_session(realtime_standin)
        assert "language" not in session["audio"]["input"]["transcription"]
        assert session["instructions"] == settings.REALTIME_INSTRUCTIONS
        assert Conversation.objects.get().language == ""

    def test_the_page_choice_of_voice_and_mode_wins_for_one_session(self, client, alice, realtime_standin):
        save(client, voice="cedar", turn_detection="manual", language="ja")
        body = post_session(client, {"voice": "ash", "turn_detection": "semantic_vad"}).json()
        assert (body["voice"], body["turn_detection"], body["language"]) == ("ash", "semantic_vad", "ja")
        assert prefs_of(alice).voice == "cedar"  # not saved as the new preference
        assert "Always answer in Japanese." in upstream_session(realtime_standin)["instructions"]

    def test_the_api_may_ask_for_a_language_or_for_detection(self, client, realtime_standin):
        save(client, language="fr")
        assert post_session(client, {"language": "de"}).json()["language"] == "de"
        assert realtime_standin.requests[-1].json["session"]["audio"]["input"]["transcription"]["language"] == "de"
        assert post_session(client, {"language": ""}).json()["language"] == ""
        last = realtime_standin.requests[-1].json["session"]
        assert "language" not in last["audio"]["input"]["transcription"]
        assert "Always answer" not in last["instructions"]

    @pytest.mark.parametrize("language", ["xx", "fr-FR", "FR", "french", 5, ["fr"]])
    def test_an_unknown_language_is_refused_clearly(self, client, realtime_standin, language):
        response = post_session(client, {"language": language})
        assert response.status_code == 400
        error = error_of(response)
        assert error["code"] == "invalid_request"
        assert error["message"].startswith(f"Unknown language {language!r}: use an ISO-639-1 code")
        assert realtime_standin.requests == [] and not Conversation.objects.exists()

    def test_a_continued_conversation_keeps_its_language(self, client, alice, realtime_standin):
        conversation = make_conversation(alice, language="it", segments=1)
        save(client, language="fr")
        body = post_session(client, {"conversation": str(conversation.uuid)}).json()
        assert body["language"] == "it" and body["segment"] == 2
        assert "Always answer in Italian." in upstream_session(realtime_standin)["instructions"]
        conversation.refresh_from_db()
        assert conversation.language == "it"

    def test_a_stored_preference_the_server_no_longer_knows_is_not_sent(self, client, alice, realtime_standin):
        Preferences.objects.create(user=alice, voice="retired", turn_detection="gone", language="xx")
        response = post_session(client)
        assert response.status_code == 201
        body = response.json()
        assert body["language"] == "" and body["turn_detection"] == "server_vad"
        assert "language" not in upstream_session(realtime_standin)["audio"]["input"]["transcription"]


class TestServerMadeCalls:
    def test_the_call_session_carries_the_language(self, client, alice, openai, server_mode):
        save(client, voice="sage", language="es")
        response = post_call(client)
        assert response.status_code == 201, response.content
        assert response.json()["language"] == "es"
        (request,) = openai.requests
        session = json.loads(parts(request)["session"][1])
        assert session["audio"]["input"]["transcription"]["language"] == "es"
        assert session["instructions"].endswith("Always answer in Spanish.")
        assert session["audio"]["output"]["voice"] == "sage"
        assert Conversation.objects.get().language == "es"

    def test_an_unknown_language_is_refused(self, client, openai, server_mode):
        response = post_call(client, {"sdp": OFFER, "language": "klingon"})
        assert response.status_code == 400
        assert error_of(response)["message"].startswith("Unknown language 'klingon'")
        assert openai.requests == []


# --- The voice page starts from them ------------------------------------------------------------


class TestVoicePage:
    def test_the_controls_start_from_the_saved_voice_and_mode(self, client, settings):
        settings.OPENAI_API_KEY = "sk-test-0123456789abcdef"
        save(client, voice="verse", turn_detection="semantic_vad", language="pl")
        html = client.get("/chat/").content.decode()
        assert '<option value="verse" selected>Verse</option>' in html
        assert re.search(r'<input type="radio" name="mode" value="hands-free" checked>', html)
        assert '<option value="semantic_vad" selected>' in html
        assert "Polish (polski)" in html
        save(client, voice="verse", turn_detection="manual")
        html = client.get("/chat/").content.decode()
        assert '<input type="radio" name="mode" value="push-to-talk" checked>' in html
        assert '<option value="server_vad" selected>' in html  # hands-free again starts from the first


# --- Conversations record their language ----------------------------------------------------------


class TestHistoryAdminExports:
    def test_history_pages_show_it(self, client, alice):
        french = make_full_conversation(alice, title="Bonjour", language="fr")
        detected = make_full_conversation(alice, title="Hello")
        listing = client.get("/conversations/").content.decode()
        assert "French (français)" in listing and "Automatic" in listing
        detail = client.get(french.get_absolute_url()).content.decode()
        assert "<dt>Language</dt><dd>French (français)</dd>" in detail
        detail = client.get(detected.get_absolute_url()).content.decode()
        assert "<dt>Language</dt><dd>Detected automatically</dd>" in detail

    def test_the_admin_shows_and_filters_by_it(self, staff_client, alice):
        french = make_full_conversation(alice, title="Bonjour", language="fr")
        make_full_conversation(alice, title="Hallo", language="de")
        make_full_conversation(alice, title="Hello")
        changelist = "/admin/conversations/conversation/"
        html = staff_client.get(changelist).content.decode()
        assert "?language=fr" in html and "?language=de" in html and "?language=auto" in html
        assert "?language=ja" not in html  # only the languages in use are listed

        def titles(query):
            return re.findall(r">(Bonjour|Hallo|Hello)<", staff_client.get(changelist + query).content.decode())

        assert titles("?language=fr") == ["Bonjour"]
        assert titles("?language=auto") == ["Hello"]
        assert titles("?language=_other") == []
        change = staff_client.get(f"/admin/conversations/conversation/{french.pk}/change/").content.decode()
        assert "French (français)" in change

    def test_exports_carry_it_and_older_records_still_import(self, alice, tmp_path):
        make_full_conversation(alice, title="Bonjour", language="fr")
        out = io.StringIO()
        call_command("export_sessions", stdout=out, stderr=io.StringIO())
        (record,) = [json.loads(line) for line in out.getvalue().splitlines()]
        assert record["language"] == "fr"
        rows = list(csv.DictReader(io.StringIO("".join(formats.stream("csv", [record])))))
        assert rows[0]["conversation_language"] == "fr"
        assert "- Language: French (français) (fr)" in "".join(formats.stream("markdown", [record]))
        # Round trip, then a record written before the field existed (same schema).
        path = tmp_path / "backup.jsonl"
        path.write_text(json.dumps(record) + "\n")
        Conversation.objects.all().delete()
        call_command("import_sessions", str(path), stdout=io.StringIO())
        assert Conversation.objects.get().language == "fr"
        del record["language"]
        path.write_text(json.dumps(record) + "\n")
        Conversation.objects.all().delete()
        call_command("import_sessions", str(path), stdout=io.StringIO())
        assert Conversation.objects.get().language == ""

    def test_an_unknown_language_in_a_record_is_kept_as_it_is(self, alice, tmp_path):
        # The importer restores what was stored; the page shows the code as it is.
        conversation = make_full_conversation(alice, language="xx")
        assert languages.label(conversation.language) == "xx"


# --- Staff see and change a user's preferences beside the user ----------------------------------


class TestAdminInline:
    def change_url(self, user):
        return f"/admin/auth/user/{user.pk}/change/"

    def test_shown_with_the_sites_defaults_until_saved(self, staff_client, alice):
        html = staff_client.get(self.change_url(alice)).content.decode()
        assert 'name="preferences-0-language"' in html and "Detect automatically" in html
        assert not Preferences.objects.exists()

    def form_data(self, staff_client, user, **preferences):
        data = change_form_data(staff_client.get(self.change_url(user)))
        data.update({
            "preferences-TOTAL_FORMS": "1", "preferences-INITIAL_FORMS": "0",
            "preferences-MIN_NUM_FORMS": "0", "preferences-MAX_NUM_FORMS": "1",
            "preferences-0-user": str(user.pk),
        })  # fmt: skip
        data.update({f"preferences-0-{k}": v for k, v in preferences.items()})
        return data

    def test_staff_change_them(self, staff_client, alice):
        data = self.form_data(staff_client, alice, voice="coral", turn_detection="semantic_vad", language="ko")
        response = staff_client.post(self.change_url(alice), data)
        assert response.status_code == 302, response.context["adminform"].form.errors
        prefs = prefs_of(alice)
        assert (prefs.voice, prefs.turn_detection, prefs.language) == ("coral", "semantic_vad", "ko")

    def test_the_same_checks_as_the_page(self, staff_client, alice):
        data = self.form_data(staff_client, alice, voice="coral", turn_detection="manual", language="xx")
        response = staff_client.post(self.change_url(alice), data)
        assert response.status_code == 200
        assert "Unknown language “xx”" in response.content.decode()
        assert not Preferences.objects.exists()


def test_a_user_without_preferences_gets_the_sites_defaults_as_they_are_now(settings):
    from accounts import preferences

    user = make_user("carol")
    settings.REALTIME_VOICE = "ballad"
    chosen = preferences.for_user(user)
    assert (chosen.voice, chosen.turn_detection, chosen.language) == ("ballad", "server_vad", "")
    assert chosen._state.adding  # not stored

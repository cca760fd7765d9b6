"""
The daily spending budget (conversations/budget.py): new keys and calls are refused with 429
budget_exhausted once a user's trusted spend over the last 24 hours leaves no room for another
session; staff can set another budget per user; a starting session holds part of the budget
until it ends; two processes racing for the last of a budget let exactly one through.

Runs on both legs (SQLite + in-memory, PostgreSQL + Redis).
"""

import json
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from conversations import actions, budget, checks
from conversations.models import BudgetHold, BudgetOverride, Conversation, ResponseUsage, Source
from tests.support.admin import change_form_data
from tests.support.api import post_session
from tests.support.factories import make_conversation, make_user, signed_in
from tests.support.processes import ROOT, server_environment

CALLS_URL = "/api/realtime/calls"
BUDGET_URL = "/api/realtime/budget"
OFFER = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
# gpt-realtime-2.1 charges $64 per million audio output tokens: $1 is 15 625 of them.
TOKENS_PER_DOLLAR = 15_625


def spend(user, usd, *, ago=timedelta(hours=1), source=Source.SERVER, conversation=None):
    """A response of `user`'s that cost `usd` (at gpt-realtime-2.1's prices), recorded `ago`."""
    conversation = conversation or make_conversation(user, model="gpt-realtime-2.1")
    tokens = int(Decimal(str(usd)) * TOKENS_PER_DOLLAR)
    return ResponseUsage.objects.create(
        conversation=conversation,
        response_id=f"resp_{ResponseUsage.objects.count()}",
        created_at=timezone.now() - ago,
        source=source,
        output_tokens=tokens,
        output_audio_tokens=tokens,
    )


def refusal(response) -> dict:
    assert response.status_code == 429, response.content
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == "budget_exhausted", error
    return error


def post_call(client):
    return client.post(CALLS_URL, data=json.dumps({"sdp": OFFER}), content_type="application/json")


@pytest.fixture(autouse=True)
def _default_budget(settings):
    settings.USER_DAILY_BUDGET_USD = "5"
    settings.BUDGET_SESSION_RESERVE_USD = "0.50"


# --- refusals on both endpoints ---------------------------------------------------------------------


@pytest.mark.django_db
class TestOverBudget:
    def test_a_key_is_refused_with_when_it_frees_up(self, realtime_standin):
        alice = make_user("alice")
        spend(alice, "1.00", ago=timedelta(hours=20))
        spend(alice, "3.80", ago=timedelta(hours=2))
        response = post_session(signed_in(alice))
        error = refusal(response)
        # $4.80 spent: $0.20 left, less than a session's $0.50. The $1.00 leaves the window in 4 hours.
        retry_after = int(response["Retry-After"])
        assert 4 * 3600 - 60 <= retry_after <= 4 * 3600
        frees = datetime.fromtimestamp(error["budget"]["frees_at"], UTC)
        assert error["message"] == (
            f"You have used today's voice budget ($5.00). It frees up at {budget.frees_at_words(frees)}."
        )
        assert error["budget"] == {
            "limit_usd": "5.00", "spent_usd": "4.80", "unverified_usd": "0.00", "held_usd": "0.00",
            "frees_at": error["budget"]["frees_at"],
        }  # fmt: skip
        assert abs(error["budget"]["frees_at"] - (timezone.now().timestamp() + retry_after)) <= 2
        # Nothing reached OpenAI, nothing was recorded or held.
        assert realtime_standin.requests == []
        assert not Conversation.objects.filter(segments__gt=0).exists()
        assert not BudgetHold.objects.exists()

    def test_a_server_made_call_is_refused_alike(self, realtime_standin, settings):
        settings.REALTIME_CONNECT = "server"
        alice = make_user("alice")
        spend(alice, "5.00", ago=timedelta(hours=23))
        response = post_call(signed_in(alice))
        error = refusal(response)
        assert 3600 - 60 <= int(response["Retry-After"]) <= 3600
        assert error["message"].startswith("You have used today's voice budget ($5.00). It frees up at ")
        assert error["budget"]["spent_usd"] == "5.00"
        assert realtime_standin.requests == []

    def test_the_browsers_usage_counts_when_there_was_no_witness(self, realtime_standin):
        alice = make_user("alice")
        spend(alice, "4.60", source=Source.BROWSER)
        error = refusal(post_session(signed_in(alice)))
        assert error["budget"]["unverified_usd"] == "4.60"

    def test_room_for_a_session_is_enough(self, realtime_standin):
        alice = make_user("alice")
        spend(alice, "4.50")
        assert post_session(signed_in(alice)).status_code == 201

    def test_another_user_is_not_affected(self, realtime_standin):
        alice, bob = make_user("alice"), make_user("bob")
        spend(alice, "9.00")
        assert refusal(post_session(signed_in(alice)))
        assert post_session(signed_in(bob)).status_code == 201

    def test_refusals_count_against_the_key_rate_limit(self, realtime_standin, settings):
        settings.KEY_RATE_LIMIT_PER_USER = "3/minute"
        alice = make_user("alice")
        spend(alice, "5.00")
        client = signed_in(alice)
        codes = [post_session(client).json()["error"]["code"] for _ in range(4)]
        assert codes == ["budget_exhausted"] * 3 + ["rate_limited"]

    def test_spend_leaving_the_window_frees_the_budget(self, realtime_standin):
        alice = make_user("alice")
        spend(alice, "5.00", ago=timedelta(hours=24, seconds=5))
        assert post_session(signed_in(alice)).status_code == 201
        now = timezone.now()
        spend(alice, "5.00", ago=timedelta(0))
        assert budget.standing(alice.pk, now=now + timedelta(hours=23)).exhausted
        assert not budget.standing(alice.pk, now=now + timedelta(hours=24, seconds=1)).exhausted

    def test_a_spent_budget_is_refused_even_without_a_reserve(self, realtime_standin, settings):
        settings.BUDGET_SESSION_RESERVE_USD = "0"
        alice = make_user("alice")
        spend(alice, "4.992", ago=timedelta(hours=2))  # whole tokens: exactly $5.00 with the next
        assert post_session(signed_in(alice)).status_code == 201
        spend(alice, "0.008", ago=timedelta(hours=1))
        response = post_session(signed_in(alice))
        assert refusal(response)["message"].startswith("You have used today's voice budget ($5.00).")
        assert 22 * 3600 - 60 <= int(response["Retry-After"]) <= 22 * 3600  # when the $4.992 leaves

    def test_no_budget_site_wide(self, realtime_standin, settings):
        settings.USER_DAILY_BUDGET_USD = "0"
        alice = make_user("alice")
        spend(alice, "500")
        assert post_session(signed_in(alice)).status_code == 201
        assert not BudgetHold.objects.exists()  # nothing to hold against


# --- staff's budget for one user --------------------------------------------------------------------


@pytest.mark.django_db
class TestOverride:
    def test_staff_lift_the_limit_for_one_user(self, realtime_standin):
        alice, bob = make_user("alice"), make_user("bob")
        for user in (alice, bob):
            spend(user, "6.00")
        BudgetOverride.objects.create(user=alice, daily_usd=Decimal(0))  # no budget
        assert post_session(signed_in(alice)).status_code == 201
        assert refusal(post_session(signed_in(bob)))
        assert budget.limit_for(alice.pk) is None and budget.limit_for(bob.pk) == Decimal(5)

    def test_staff_raise_it(self, realtime_standin):
        alice = make_user("alice")
        spend(alice, "6.00")
        BudgetOverride.objects.create(user=alice, daily_usd=Decimal("20"))
        response = post_session(signed_in(alice))
        assert response.status_code == 201
        assert signed_in(alice).get(BUDGET_URL).json()["budget"]["limit_usd"] == "20.00"

    def test_staff_lower_it(self, realtime_standin):
        alice = make_user("alice")
        spend(alice, "0.80")
        BudgetOverride.objects.create(user=alice, daily_usd=Decimal("1"))
        error = refusal(post_session(signed_in(alice)))
        assert "($1.00)" in error["message"]

    def test_an_empty_amount_means_the_sites_budget(self, realtime_standin):
        alice = make_user("alice")
        spend(alice, "6.00")
        BudgetOverride.objects.create(user=alice, daily_usd=None)
        assert refusal(post_session(signed_in(alice)))

    def test_a_budget_below_the_reserve_still_allows_one_session(self, realtime_standin):
        alice = make_user("alice")
        BudgetOverride.objects.create(user=alice, daily_usd=Decimal("0.30"))
        client = signed_in(alice)
        assert post_session(client).status_code == 201
        assert refusal(post_session(client))  # the first holds all of it


# --- holds --------------------------------------------------------------------------------------


@pytest.mark.django_db
class TestHolds:
    @pytest.fixture(autouse=True)
    def _two_sessions(self, settings):
        settings.USER_DAILY_BUDGET_USD = "1"

    @pytest.mark.django_db(transaction=True)  # aend_conversation closes the connection it used
    def test_sessions_running_hold_the_budget_until_they_end(self, realtime_standin, settings):
        alice = make_user("alice")
        client = signed_in(alice)
        first = post_session(client)
        assert post_session(client).status_code == 201
        response = post_session(client)
        error = refusal(response)
        assert "running now hold the rest of today's voice budget ($1.00)" in error["message"]
        assert error["budget"]["held_usd"] == "1.00" and error["budget"]["spent_usd"] == "0.00"
        lifetime = 1800 + settings.REALTIME_KEY_TTL  # they would lapse by themselves
        assert lifetime - 60 <= int(response["Retry-After"]) <= lifetime
        # The user stops the first session: its conversation ends, and so does its hold.
        ended = Conversation.objects.get(uuid=first.json()["conversation"]["id"])
        assert async_to_sync(actions.aend_conversation)(ended)
        assert post_session(client).status_code == 201

    def test_a_hold_lapses_by_itself(self, realtime_standin):
        alice = make_user("alice")
        client = signed_in(alice)
        assert [post_session(client).status_code for _ in range(3)] == [201, 201, 429]
        later = timezone.now() + budget.hold_lifetime() + timedelta(seconds=1)
        assert not budget.standing(alice.pk, now=later).exhausted

    def test_lapsed_holds_make_room_and_are_cleared_by_the_next_check(self):
        alice = make_user("alice")
        budget.hold(alice.pk, uuid.uuid4()), budget.hold(alice.pk, uuid.uuid4())
        with pytest.raises(budget.BudgetExhausted):
            budget.hold(alice.pk, uuid.uuid4())
        later = timezone.now() + budget.hold_lifetime() + timedelta(seconds=1)
        kept = budget.hold(alice.pk, uuid.uuid4(), now=later)
        assert list(BudgetHold.objects.values_list("pk", flat=True)) == [kept]

    def test_continuing_a_conversation_takes_over_its_hold(self, realtime_standin, settings):
        """After a lost connection the page continues the conversation in a new session: that
        session holds in place of the lost one, not beside it."""
        settings.KEY_RATE_LIMIT_PER_USER = "100/minute"
        alice = make_user("alice")
        client = signed_in(alice)
        conversation = post_session(client).json()["conversation"]["id"]
        assert post_session(client).status_code == 201  # another conversation: the budget is held in full
        assert refusal(post_session(client))
        for _ in range(3):
            assert post_session(client, {"conversation": conversation}).status_code == 201
        assert BudgetHold.objects.filter(conversation_uuid=conversation).count() == 1
        assert BudgetHold.objects.count() == 2

    def test_the_idle_sweep_releases_the_holds_of_what_it_ends(self, realtime_standin):
        alice = make_user("alice")
        client = signed_in(alice)
        post_session(client), post_session(client)
        assert refusal(post_session(client))
        actions.end_idle_conversations(now=timezone.now() + timedelta(hours=2), timeout=60)
        assert not BudgetHold.objects.exists()
        assert post_session(client).status_code == 201

    def test_a_failed_mint_gives_the_hold_back(self, realtime_standin, settings):
        settings.USER_DAILY_BUDGET_USD = "0.50"  # one session
        client = signed_in(make_user("alice"))
        realtime_standin.fail_next(500)
        assert post_session(client).status_code == 502
        assert not BudgetHold.objects.exists()
        assert post_session(client).status_code == 201

    def test_a_failed_server_call_gives_the_hold_back(self, realtime_standin, settings):
        settings.USER_DAILY_BUDGET_USD = "0.50"
        settings.REALTIME_CONNECT = "server"
        realtime_standin.fail_next(500, route="calls")
        assert post_call(signed_in(make_user("alice"))).status_code == 502
        assert not BudgetHold.objects.exists()

    def test_deleting_the_conversation_releases_its_hold(self, realtime_standin):
        alice = make_user("alice")
        client = signed_in(alice)
        first = post_session(client).json()["conversation"]["id"]
        post_session(client)
        assert refusal(post_session(client))
        actions.delete_conversations(Conversation.objects.filter(uuid=first))
        assert post_session(client).status_code == 201

    def test_release_for_a_hung_up_call(self, realtime_standin):
        alice = make_user("alice")
        client = signed_in(alice)
        first = post_session(client).json()["conversation"]["id"]
        post_session(client)
        assert refusal(post_session(client))
        budget.release(Conversation.objects.get(uuid=first).pk)
        assert post_session(client).status_code == 201


# --- the race -----------------------------------------------------------------------------------


def race(user_id, contenders):
    """`contenders` threads, each with its own database connection, check and hold at once."""
    start = threading.Barrier(contenders)
    results = []

    def contend():
        try:
            start.wait()
            results.append(budget.hold(user_id, uuid.uuid4()))
        except budget.BudgetExhausted:
            results.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=contend) for _ in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


@pytest.mark.django_db(transaction=True)
def test_racing_for_the_last_session_lets_exactly_one_through(settings):
    """The last $0.50 of a budget, claimed by four connections at the same moment, five times over:
    each time exactly one gets through, and the holds never exceed the budget."""
    alice = make_user("alice")
    spend(alice, "2.00")
    settings.USER_DAILY_BUDGET_USD = "2.50"
    for _ in range(5):
        results = race(alice.pk, 4)
        assert sorted(map(str, results)).count("refused") == 3, results
        assert BudgetHold.objects.count() == 1
        assert budget.standing(alice.pk).spent + budget.standing(alice.pk).held == Decimal("2.50")
        BudgetHold.objects.all().delete()


# --- where a user stands --------------------------------------------------------------------------


@pytest.mark.django_db
class TestBudgetEndpoint:
    def test_the_meter(self, alice_client, alice):
        spend(alice, "1.25")
        spend(alice, "0.10", source=Source.BROWSER)
        response = alice_client.get(BUDGET_URL)
        assert response.status_code == 200
        assert response.json() == {"budget": {
            "limit_usd": "5.00", "spent_usd": "1.35", "unverified_usd": "0.10", "held_usd": "0.00", "frees_at": None,
        }}  # fmt: skip
        assert "no-cache" in response["Cache-Control"]

    def test_no_budget(self, alice_client, settings):
        settings.USER_DAILY_BUDGET_USD = "0"
        assert alice_client.get(BUDGET_URL).json()["budget"]["limit_usd"] is None

    def test_anonymous_gets_json_401(self, client):
        response = client.get(BUDGET_URL)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "not_authenticated"

    def test_only_get(self, alice_client):
        assert alice_client.post(BUDGET_URL).status_code == 405

    def test_the_voice_page_has_it(self, alice_client, alice):
        spend(alice, "2.00")
        response = alice_client.get("/chat/")
        script = response.content.split(b'id="voice-config" type="application/json">')[1]
        config = json.loads(script.split(b"<")[0])
        assert config["budget"]["spent_usd"] == "2.00" and config["budget"]["limit_usd"] == "5.00"
        assert config["budgetUrl"] == BUDGET_URL

    def test_is_spent_ignores_holds(self, settings):
        alice = make_user("alice")
        settings.USER_DAILY_BUDGET_USD = "1"
        budget.hold(alice.pk, uuid.uuid4())
        budget.hold(alice.pk, uuid.uuid4())
        assert not budget.is_spent(alice.pk)
        spend(alice, "1.00")
        assert budget.is_spent(alice.pk)


# --- settings -------------------------------------------------------------------------------------


class TestSettingsChecks:
    @pytest.mark.parametrize("value", ["five", "-1", "nan", "inf", "", "1e"])
    def test_a_bad_amount_is_a_clear_error(self, settings, value):
        settings.USER_DAILY_BUDGET_USD = value
        errors = checks.budget_settings(None)
        assert [e.id for e in errors] == ["conversations.E004"]
        assert errors[0].msg.startswith(f"USER_DAILY_BUDGET_USD={value!r} is ")
        assert "negative" in errors[0].msg if value == "-1" else "not a number" in errors[0].msg

    def test_a_bad_reserve(self, settings):
        settings.BUDGET_SESSION_RESERVE_USD = "-0.5"
        assert [e.id for e in checks.budget_settings(None)] == ["conversations.E005"]

    @pytest.mark.parametrize("value", ["0", "5", "0.50", " 12.5 "])
    def test_good_amounts(self, settings, value):
        settings.USER_DAILY_BUDGET_USD = settings.BUDGET_SESSION_RESERVE_USD = value
        assert checks.budget_settings(None) == []

    def test_the_server_does_not_start(self, settings):
        settings.USER_DAILY_BUDGET_USD = "five dollars"
        with pytest.raises(SystemCheckError, match="USER_DAILY_BUDGET_USD='five dollars' is not a number"):
            call_command("check")


# --- staff: the budget on the user's page, the usage page --------------------------------------------


@pytest.mark.django_db
class TestAdmin:
    def change_url(self, user):
        return f"/admin/auth/user/{user.pk}/change/"

    def post_budget(self, staff_client, user, amount):
        data = change_form_data(staff_client.get(self.change_url(user)))
        data.update({"budget_override-TOTAL_FORMS": "1", "budget_override-0-user": str(user.pk),
                     "budget_override-0-daily_usd": amount})  # fmt: skip
        return staff_client.post(self.change_url(user), data)

    def test_the_user_page_shows_it_with_the_sites_budget(self, staff_client, alice, settings):
        html = staff_client.get(self.change_url(alice)).content.decode()
        assert 'name="budget_override-0-daily_usd"' in html
        assert "Empty: the site's budget (USER_DAILY_BUDGET_USD, now $5.00 per 24 hours)" in html
        assert "0: no budget for this user" in html

    def test_staff_lift_the_limit_on_the_users_page(self, staff_client, alice, realtime_standin):
        spend(alice, "7.00")
        assert refusal(post_session(signed_in(alice)))
        response = self.post_budget(staff_client, alice, "0")
        assert response.status_code == 302, response.context["inline_admin_formsets"][-1].formset.errors
        assert BudgetOverride.objects.get(user=alice).daily_usd == 0
        assert post_session(signed_in(alice)).status_code == 201

    def test_a_negative_budget_is_refused(self, staff_client, alice):
        response = self.post_budget(staff_client, alice, "-3")
        assert response.status_code == 200
        assert "Ensure this value is greater than or equal to 0" in response.content.decode()
        assert not BudgetOverride.objects.exists()

    def test_the_usage_page_puts_users_over_and_near_their_budget_first(self, staff_client, settings):
        users = {name: make_user(name) for name in ("amy", "ben", "cat", "dan", "eve")}
        spend(users["amy"], "1.00")
        spend(users["ben"], "5.20")  # over
        spend(users["cat"], "4.16")  # near: 83 %
        spend(users["dan"], "3.00", ago=timedelta(hours=25))  # outside the window: not listed
        BudgetOverride.objects.create(user=users["eve"], daily_usd=0)
        spend(users["eve"], "9.00")  # no budget
        response = staff_client.get("/admin/conversations/conversation/usage/")
        rows = response.context["budgets"]
        assert [(r.username, r.state, r.percent) for r in rows] == [
            ("ben", "over", 104), ("cat", "near", 83), ("eve", "", None), ("amy", "", 20),
        ]  # fmt: skip
        html = response.content.decode()
        assert "<strong>Over budget</strong>" in html and "Near budget (80 % or more)" in html
        assert html.index(">ben<") < html.index(">cat<") < html.index(">amy<")

    def test_the_usage_page_costs_the_same_queries_for_more_users(self, staff_client):
        def queries():
            with CaptureQueriesContext(connection) as captured:
                assert staff_client.get("/admin/conversations/conversation/usage/").status_code == 200
            return len(captured)

        spend(make_user("amy"), "1.00")
        few = queries()
        for n in range(8):
            spend(make_user(f"user{n}"), "4.50")
        assert queries() == few


CONTENDER = """
import sys, time, uuid, django
django.setup()
from django.db import connection
from conversations import budget
connection.ensure_connection()  # connected before the start, so that both start alike
start = float(sys.argv[1])
while time.time() < start:
    time.sleep(0.0005)
try:
    print("held", budget.hold(int(sys.argv[2]), uuid.uuid4()))
except budget.BudgetExhausted as refusal:
    print("refused", refusal.retry_after)
"""


@pytest.mark.django_db(transaction=True)
def test_two_processes_racing_for_the_last_session_let_exactly_one_through(settings):
    """Two server processes (here: two interpreters on the test database) check and hold at the
    same instant for a budget that only one more session fits."""
    alice = make_user("alice")
    spend(alice, "4.50")
    environment = server_environment(USER_DAILY_BUDGET_USD="5", BUDGET_SESSION_RESERVE_USD="0.50")
    start = time.time() + 4  # both interpreters are up and connected by then
    contenders = [
        subprocess.Popen([sys.executable, "-c", CONTENDER, str(start), str(alice.pk)], cwd=ROOT, env=environment,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]  # fmt: skip
    outcomes = []
    for contender in contenders:
        out, err = contender.communicate(timeout=60)
        assert contender.returncode == 0, err
        outcomes.append(out.split()[0])
    assert sorted(outcomes) == ["held", "refused"]
    assert BudgetHold.objects.filter(user=alice).count() == 1

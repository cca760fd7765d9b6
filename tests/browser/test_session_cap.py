"""The session cap in the browser: the server hangs the call up at REALTIME_MAX_SESSION_SECONDS
(its witness supervisor's sweep), the page says why in words and continues the same conversation
in a new session. A server of its own with an 8-second cap."""

import re

import pytest
from playwright.sync_api import expect

from conversations.models import Conversation, RealtimeCall
from tests.browser.conftest import _live_server, _new_user_on_chat
from tests.realtime_standin import scripts
from tests.support.browser import conversation_of, expect_alert, expect_lines, expect_phase, start

pytestmark = pytest.mark.django_db(transaction=True)

CAP = 8


@pytest.fixture(scope="module")
def _capped_server(django_db_setup, django_db_blocker, _realtime_standin_server):
    yield from _live_server(
        _realtime_standin_server,
        django_db_blocker,
        log="daphne-capped.log",
        REALTIME_MAX_SESSION_SECONDS=str(CAP),
    )


@pytest.fixture
def capped_page(_capped_server, transactional_db, _realtime_standin_server, page):
    yield from _new_user_on_chat(_capped_server, _realtime_standin_server, page, "capped")


def test_the_cap_hang_up_says_why_and_continue_keeps_the_conversation(capped_page, standin):
    page, user = capped_page
    standin.calls.script_next(scripts.conversation(1))
    standin.calls.script_next(scripts.conversation(1, first=2))
    start(page)
    first = standin.calls.wait_for_call()
    expect_lines(page, 2)
    # Near the cap the page shows the time left.
    expect(page.locator("#session-left")).to_have_text(re.compile(r"^0:0\d left$"), timeout=CAP * 1000)

    # The server hangs up (not the page's timer: it waits a grace for the server's word).
    alert = expect_alert(page, "Session time limit reached", timeout=(CAP + 8) * 1000)
    expect(alert).to_contain_text("This session reached its 8-second limit.")
    assert first.ended_by == "hangup"
    expect_phase(page, "lost")
    conversation = conversation_of(user)
    call = RealtimeCall.objects.get(call_id=first.id)
    assert call.hangup_reason == "session_cap" and call.hung_up_at is not None

    with page.expect_request("**/api/realtime/sessions") as request:
        page.get_by_role("button", name="Continue this conversation").click()
    assert request.value.post_data_json["conversation"] == str(conversation.uuid)
    standin.calls.wait_for_call(count=2)
    expect_phase(page, "live")
    expect_lines(page, 4)
    assert Conversation.objects.filter(user=user).count() == 1
    assert conversation_of(user).segments == 2
    assert page.errors == []

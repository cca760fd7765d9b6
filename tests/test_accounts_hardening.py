"""
Hardening of the accounts pages and the admin's own account lists:

- a bulk action on the User or Group changelist whose selection is not ids is a 400 (as on the
  Conversation admin), never a 500, and changes nothing;
- the admin's log-in page answers 429 when the log-in throttle refuses, as the site's does;
- every sign-up POST counts against SIGNUP_ATTEMPT_LIMIT_PER_IP, so a script cannot post
  invalid sign-ups (each one a username lookup and the password validators) without end.
"""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.urls import reverse
from pytest_django.asserts import assertContains

from tests.support.factories import PASSWORD, make_user

pytestmark = pytest.mark.django_db

User = get_user_model()
BAD_SELECTIONS = ["abc", "1'", "1 OR 1=1", "99999999999999999999", ""]


def signed_in(client) -> bool:
    return "_auth_user_id" in client.session


class TestAccountActionsOnBadSelections:
    @pytest.fixture
    def answers_like_a_visitor(self, staff_client):
        staff_client.raise_request_exception = False  # a failing page is a 500 here, as for a visitor
        return staff_client

    @pytest.mark.parametrize("selected", BAD_SELECTIONS)
    def test_deleting_users_with_a_selection_that_is_not_ids_is_a_400(self, answers_like_a_visitor, selected):
        bob = make_user("bob")
        for post in ({}, {"post": "yes"}):  # the confirmation page, and the confirmed delete
            response = answers_like_a_visitor.post(
                reverse("admin:auth_user_changelist"),
                {"action": "delete_selected", "_selected_action": [bob.pk, selected], **post},
            )
            assertContains(response, "Error 400", status_code=400)
        assert User.objects.filter(pk=bob.pk).exists()

    @pytest.mark.parametrize("selected", BAD_SELECTIONS)
    def test_deleting_groups_with_a_selection_that_is_not_ids_is_a_400(
        self, answers_like_a_visitor, selected
    ):
        editors = Group.objects.create(name="editors")
        for post in ({}, {"post": "yes"}):
            response = answers_like_a_visitor.post(
                reverse("admin:auth_group_changelist"),
                {"action": "delete_selected", "_selected_action": [editors.pk, selected], **post},
            )
            assertContains(response, "Error 400", status_code=400)
        assert Group.objects.filter(pk=editors.pk).exists()

    def test_a_good_selection_still_deletes(self, staff_client):
        bob = make_user("bob")
        changelist = reverse("admin:auth_user_changelist")
        data = {"action": "delete_selected", "_selected_action": [bob.pk], "post": "yes"}
        assert staff_client.post(changelist, data).status_code == 302
        assert not User.objects.filter(pk=bob.pk).exists()


def admin_login(client, username="alice", password=PASSWORD, **extra):
    return client.post(
        reverse("admin:login"), {"username": username, "password": password, "next": "/admin/"}, **extra
    )


class TestAdminLogInThrottleStatus:
    def test_a_throttled_admin_log_in_is_a_429_with_the_form_and_the_message(self, client, settings):
        settings.LOGIN_FAILURE_LIMIT_PER_ACCOUNT = "3/15minute"
        make_user(is_staff=True)
        for _ in range(3):
            assert admin_login(client, password="wrong").status_code == 200  # a wrong password: 200
        response = admin_login(client)
        assertContains(response, "Too many failed log-in attempts", status_code=429)
        assertContains(response, 'id="login-form"', status_code=429)  # the admin's own log-in page
        assert not signed_in(client)

    def test_a_wrong_password_is_still_a_200_and_the_right_one_logs_in(self, client):
        make_user(is_staff=True)
        assert admin_login(client, password="wrong").status_code == 200
        response = admin_login(client)
        assert response.status_code == 302 and response.url == "/admin/"

    def test_the_log_in_page_still_renders_and_sends_staff_in(self, client):
        assertContains(client.get(reverse("admin:login")), 'id="login-form"')
        client.force_login(make_user(is_staff=True))
        assert client.get(reverse("admin:login")).url == reverse("admin:index")


def signup(client, **fields):
    extra = {k: fields.pop(k) for k in list(fields) if k.isupper()}  # REMOTE_ADDR, HTTP_…
    data = {"username": "bob", "email": "", "password1": PASSWORD, "password2": PASSWORD}
    data.update(fields)
    return client.post(reverse("signup"), data, **extra)


class TestSignUpAttemptLimit:
    def test_invalid_sign_ups_are_limited_per_address(self, client, settings):
        settings.SIGNUP_ATTEMPT_LIMIT_PER_IP = "4/hour"
        make_user("taken")
        for _ in range(4):  # a script posting sign-ups that can never succeed
            assert signup(client, username="taken").status_code == 200
        response = signup(client, username="taken")
        assertContains(response, "Too many sign-up attempts from your network", status_code=429)
        assertContains(response, "minutes", status_code=429)
        # Refused before the form is checked: no "already exists", no password verdict.
        assert "already exists" not in response.content.decode()
        # Even a good sign-up waits now; another address is still welcome.
        assert signup(client, username="bob").status_code == 429
        assert not User.objects.filter(username="bob").exists()
        assert signup(client, username="bob", REMOTE_ADDR="198.51.100.1").status_code == 302

    def test_a_person_who_mistypes_a_few_times_still_signs_up_by_default(self, client):
        for _ in range(5):
            assert signup(client, password1=PASSWORD, password2="typo").status_code == 200
        assert signup(client).status_code == 302
        assert signed_in(client)

    def test_an_ipv6_64_counts_as_one_address(self, client, settings):
        settings.SIGNUP_ATTEMPT_LIMIT_PER_IP = "2/hour"
        for i in (1, 2):
            assert signup(client, password2="typo", REMOTE_ADDR=f"2001:db8:5:6::{i}").status_code == 200
        assert signup(client, REMOTE_ADDR="2001:db8:5:6:a:b:c:d").status_code == 429
        assert signup(client, REMOTE_ADDR="2001:db8:5:7::1").status_code == 302

    def test_the_page_itself_is_not_counted(self, client, settings):
        settings.SIGNUP_ATTEMPT_LIMIT_PER_IP = "1/hour"
        for _ in range(3):
            assert client.get(reverse("signup")).status_code == 200
        assert signup(client).status_code == 302

    def test_the_default_is_thirty_an_hour(self):
        from django.conf import settings

        assert settings.SIGNUP_ATTEMPT_LIMIT_PER_IP == "30/hour"


def test_a_malformed_attempt_limit_stops_the_start():
    from tests.support.processes import run_python

    result = run_python("import django; django.setup()", SECRET_KEY="x" * 50, SIGNUP_ATTEMPT_LIMIT_PER_IP="thirty an hour")
    assert result.returncode != 0
    assert "SIGNUP_ATTEMPT_LIMIT_PER_IP='thirty an hour' is not a rate limit" in result.stderr

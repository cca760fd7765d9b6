import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from tests.support.factories import PASSWORD, make_user

pytestmark = pytest.mark.django_db

User = get_user_model()


def signup(client, **fields):
    extra = {k: fields.pop(k) for k in list(fields) if k.isupper()}  # REMOTE_ADDR, HTTP_…
    data = {"username": "bob", "email": "", "password1": PASSWORD, "password2": PASSWORD}
    data.update(fields)
    return client.post(reverse("signup"), data, **extra)


def login(client, username="alice", password=PASSWORD, **extra):
    return client.post(reverse("login"), {"username": username, "password": password}, **extra)


class TestSignUp:
    def test_creates_the_account_and_signs_in(self, client):
        response = signup(client, email="bob@example.com")
        assert response.status_code == 302
        assert response.url == reverse("chat")
        user = User.objects.get(username="bob")
        assert user.email == "bob@example.com"
        assert client.get(reverse("chat")).status_code == 200

    def test_email_is_optional(self, client):
        assert signup(client).status_code == 302
        assert User.objects.get(username="bob").email == ""

    def test_taken_username_is_refused(self, client):
        make_user("bob")
        response = signup(client, username="Bob")
        assert response.status_code == 200
        assert "A user with that username already exists." in response.content.decode()
        assert User.objects.count() == 1

    def test_mismatched_passwords(self, client):
        response = signup(client, password2=PASSWORD + "x")
        assert response.status_code == 200
        assert "The two password fields didn’t match." in response.content.decode()
        assert not User.objects.exists()

    @pytest.mark.parametrize(
        "password, message",
        [
            ("password", "This password is too common."),
            ("84720193", "This password is entirely numeric."),
            ("a1b2", "This password is too short."),
        ],
    )
    def test_weak_passwords(self, client, password, message):
        response = signup(client, password1=password, password2=password)
        assert response.status_code == 200
        assert message in response.content.decode()
        assert not User.objects.exists()

    def test_signed_in_user_is_sent_to_the_chat(self, client):
        client.force_login(make_user())
        assert client.get(reverse("signup")).url == reverse("chat")


class TestLogIn:
    def test_good_credentials(self, client):
        make_user()
        response = login(client)
        assert response.status_code == 302
        assert response.url == reverse("chat")

    def test_next_is_followed(self, client):
        make_user()
        response = client.post(
            reverse("login") + "?next=/conversations/",
            {"username": "alice", "password": PASSWORD, "next": "/conversations/"},
        )
        assert response.url == "/conversations/"

    def test_wrong_password_says_so(self, client):
        make_user()
        response = login(client, password="nope")
        assert response.status_code == 200
        assert "Please enter a correct username and password" in response.content.decode()
        assert "_auth_user_id" not in client.session


class TestLogInThrottle:
    def test_account_locked_after_repeated_failures_even_with_right_password(self, client, settings):
        settings.LOGIN_FAILURE_LIMIT_PER_ACCOUNT = "3/15minute"
        make_user()
        for _ in range(3):
            assert login(client, password="wrong").status_code == 200
        response = login(client)  # the right password no longer gets checked
        assert response.status_code == 429
        body = response.content.decode()
        assert "Too many failed log-in attempts" in body
        assert "minutes" in body
        assert "_auth_user_id" not in client.session

    def test_other_accounts_are_not_affected(self, client, settings):
        settings.LOGIN_FAILURE_LIMIT_PER_ACCOUNT = "3/15minute"
        make_user("alice")
        make_user("carol")
        for _ in range(3):
            login(client, "alice", "wrong")
        assert login(client, "carol").status_code == 302

    def test_username_case_does_not_dodge_the_limit(self, client, settings):
        settings.LOGIN_FAILURE_LIMIT_PER_ACCOUNT = "3/15minute"
        make_user()
        for name in ("alice", "ALICE", "Alice"):
            login(client, name, "wrong")
        assert login(client).status_code == 429

    def test_one_address_trying_many_accounts_is_throttled(self, client, settings):
        settings.LOGIN_FAILURE_LIMIT_PER_IP = "4/15minute"
        make_user("dave")
        for i in range(4):
            login(client, f"user{i}", "wrong")
        assert login(client, "dave").status_code == 429
        # Another address is still welcome.
        assert login(client, "dave", REMOTE_ADDR="10.1.2.3").status_code == 302

    def test_success_resets_the_account_counter(self, client, settings):
        settings.LOGIN_FAILURE_LIMIT_PER_ACCOUNT = "3/15minute"
        make_user()
        login(client, password="wrong")
        login(client, password="wrong")
        assert login(client).status_code == 302
        client.logout()
        login(client, password="wrong")
        login(client, password="wrong")
        assert login(client).status_code == 302


    def test_a_post_without_password_does_not_clear_the_account_count(self, client, settings):
        """Guess, guess, post an empty password (never checked), guess... must still lock."""
        settings.LOGIN_FAILURE_LIMIT_PER_ACCOUNT = "3/15minute"
        make_user()
        for _ in range(3):
            login(client, password="wrong")
            login(client, password="")
        assert login(client).status_code == 429
        assert "_auth_user_id" not in client.session

    def test_an_ipv6_64_counts_as_one_address(self, client, settings):
        settings.LOGIN_FAILURE_LIMIT_PER_IP = "4/15minute"
        make_user("dave")
        for i in range(1, 5):  # four addresses of one /64, four accounts
            login(client, f"user{i}", "wrong", REMOTE_ADDR=f"2001:db8:1:2::{i}")
        assert login(client, "dave", REMOTE_ADDR="2001:db8:1:2:ffff:ffff:ffff:ffff").status_code == 429
        assert login(client, "dave", REMOTE_ADDR="2001:db8:1:3::1").status_code == 302


def admin_login(client, username="alice", password=PASSWORD, **extra):
    return client.post(
        reverse("admin:login"), {"username": username, "password": password, "next": "/admin/"}, **extra
    )


def signed_in(client) -> bool:
    return "_auth_user_id" in client.session


class TestAdminLogInThrottle:
    """The admin's log-in page shares the site's throttle: same limits, same counters."""

    def test_forty_wrong_passwords_then_the_right_one_is_refused(self, client):
        make_user(is_staff=True)
        statuses = [admin_login(client, password="wrong").status_code for _ in range(40)]
        # Wrong passwords are the form's 200 until the account's limit (5 by default), then 429.
        assert statuses == [200] * 5 + [429] * 35
        response = admin_login(client)
        assert response.status_code == 429
        assert not signed_in(client)
        assert "Too many failed log-in attempts" in response.content.decode()
        assert client.get("/admin/").status_code == 302  # still sent to log in

    def test_an_address_over_its_limit_on_the_site_is_over_it_on_the_admin(self, client, settings):
        settings.LOGIN_FAILURE_LIMIT_PER_IP = "4/15minute"
        make_user(is_staff=True)
        for i in range(4):
            login(client, f"user{i}", "wrong")
        response = admin_login(client)
        assert not signed_in(client)
        assert "Too many failed log-in attempts" in response.content.decode()
        assert admin_login(client, REMOTE_ADDR="10.1.2.3").status_code == 302  # another address may

    def test_admin_failures_lock_the_account_on_the_site(self, client, settings):
        settings.LOGIN_FAILURE_LIMIT_PER_ACCOUNT = "3/15minute"
        make_user(is_staff=True)
        for i in range(3):  # from three addresses: only the account counter can catch this
            admin_login(client, password="wrong", REMOTE_ADDR=f"10.0.0.{i}")
        assert login(client, REMOTE_ADDR="10.9.9.9").status_code == 429
        assert not signed_in(client)

    def test_staff_still_log_in(self, client):
        make_user(is_staff=True)
        response = admin_login(client)
        assert response.status_code == 302 and response.url == "/admin/"
        assert client.get("/admin/").status_code == 200

    def test_a_member_trying_the_admin_with_the_right_password_is_not_locked_out(self, client, settings):
        settings.LOGIN_FAILURE_LIMIT_PER_ACCOUNT = "3/15minute"
        make_user()  # not staff: the admin refuses, but the password was no guess
        for _ in range(5):
            response = admin_login(client)
            assert "for a staff account" in response.content.decode()
        assert login(client).status_code == 302


class TestSignUpThrottle:
    def test_an_address_gets_n_accounts_then_429(self, client, settings):
        settings.SIGNUP_RATE_LIMIT_PER_IP = "3/hour"
        for name in ("bot1", "bot2", "bot3"):
            assert signup(client, username=name).status_code == 302
            client.logout()
        response = signup(client, username="bot4")
        assert response.status_code == 429
        body = response.content.decode()
        assert "Too many accounts have been created from your network" in body
        assert "minutes" in body
        assert User.objects.count() == 3
        assert not signed_in(client)
        # Another address is still welcome.
        assert signup(client, username="carol", REMOTE_ADDR="198.51.100.1").status_code == 302

    def test_a_burst_of_twelve_makes_only_the_allowed_accounts(self, client, settings):
        settings.SIGNUP_RATE_LIMIT_PER_IP = "5/hour"
        statuses = []
        for i in range(12):
            statuses.append(signup(client, username=f"bot{i}").status_code)
            client.logout()
        assert statuses == [302] * 5 + [429] * 7
        assert User.objects.count() == 5

    def test_refused_sign_ups_do_not_count(self, client, settings):
        settings.SIGNUP_RATE_LIMIT_PER_IP = "2/hour"
        for _ in range(5):  # a person fighting the password rules
            assert signup(client, password1="password", password2="password").status_code == 200
        assert signup(client, username="bob").status_code == 302
        client.logout()
        assert signup(client, username="bob2").status_code == 302

    def test_an_ipv6_64_counts_as_one_address(self, client, settings):
        settings.SIGNUP_RATE_LIMIT_PER_IP = "2/hour"
        for i in (1, 2):
            assert signup(client, username=f"bot{i}", REMOTE_ADDR=f"2001:db8:5:6::{i}").status_code == 302
            client.logout()
        assert signup(client, username="bot3", REMOTE_ADDR="2001:db8:5:6:a:b:c:d").status_code == 429
        assert signup(client, username="bot4", REMOTE_ADDR="2001:db8:5:7::1").status_code == 302
        assert User.objects.count() == 3

    def test_behind_a_proxy_the_forwarded_address_counts(self, client, settings):
        settings.NUM_PROXIES, settings.SIGNUP_RATE_LIMIT_PER_IP = 1, "1/hour"
        assert signup(client, username="bot1", HTTP_X_FORWARDED_FOR="203.0.113.7").status_code == 302
        client.logout()
        assert signup(client, username="bot2", HTTP_X_FORWARDED_FOR="203.0.113.7").status_code == 429
        assert signup(client, username="bot3", HTTP_X_FORWARDED_FOR="198.51.100.1").status_code == 302


class TestLogOut:
    def test_get_shows_a_confirmation_and_does_not_log_out(self, client):
        client.force_login(make_user())
        response = client.get(reverse("logout"))
        assert response.status_code == 200
        assert "Log out?" in response.content.decode()
        assert "_auth_user_id" in client.session

    def test_post_logs_out(self, client):
        client.force_login(make_user())
        response = client.post(reverse("logout"), follow=True)
        assert response.redirect_chain[-1][0] == reverse("login")
        assert "You have been logged out." in response.content.decode()
        assert "_auth_user_id" not in client.session


class TestPasswordChange:
    def test_change_password(self, client):
        user = make_user()
        client.force_login(user)
        response = client.post(
            reverse("password_change"),
            {"old_password": PASSWORD, "new_password1": "a-new-long-passphrase", "new_password2": "a-new-long-passphrase"},
        )
        assert response.status_code == 302
        user.refresh_from_db()
        assert user.check_password("a-new-long-passphrase")
        # Still signed in: the session hash was updated.
        assert client.get(reverse("chat")).status_code == 200

    def test_wrong_old_password(self, client):
        user = make_user()
        client.force_login(user)
        response = client.post(
            reverse("password_change"),
            {"old_password": "nope", "new_password1": "a-new-long-passphrase", "new_password2": "a-new-long-passphrase"},
        )
        assert response.status_code == 200
        assert "Your old password was entered incorrectly" in response.content.decode()
        user.refresh_from_db()
        assert user.check_password(PASSWORD)

    def test_needs_login(self, client):
        response = client.get(reverse("password_change"))
        assert response.status_code == 302
        assert response.url.startswith(reverse("login"))


class TestAnonymousVisitors:
    @pytest.mark.parametrize("path", ["/chat/", "/conversations/"])
    def test_are_sent_to_log_in(self, client, path):
        response = client.get(path)
        assert response.status_code == 302
        assert response.url == f"/accounts/login/?next={path}"

    def test_home_sends_anonymous_to_login_and_members_to_chat(self, client):
        assert client.get("/").url == reverse("login")
        client.force_login(make_user())
        assert client.get("/").url == reverse("chat")

    def test_login_page_renders(self, client):
        response = client.get(reverse("login"))
        assert response.status_code == 200
        assert 'name="username"' in response.content.decode()

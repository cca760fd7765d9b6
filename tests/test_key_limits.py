"""
The limits on key issuance: per user (burst and daily) and per client address.

These run on the in-process memory storage by default and on Redis (redis-py asyncio) when
REDIS_URL is set — the CI's second leg.
"""

import asyncio
import uuid

import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from django.test import AsyncClient

from conversations.models import Conversation
from tests.support.api import error_of, post_session
from tests.support.factories import make_user, signed_in
from voiceproject import ratelimit


def retry_after(response) -> int:
    assert response.status_code == 429, response.content
    value = int(response["Retry-After"])
    assert value >= 1
    return value


@pytest.mark.django_db
class TestPerUser:
    def test_exactly_n_then_429_with_retry_after(self, realtime_standin, settings):
        settings.KEY_RATE_LIMIT_PER_USER = "5/minute"
        client = signed_in(make_user("alice"))
        statuses = [post_session(client).status_code for _ in range(5)]
        assert statuses == [201] * 5
        refused = post_session(client)
        assert 1 <= retry_after(refused) <= 60
        error = error_of(refused)
        assert error["code"] == "rate_limited"
        assert "too quickly" in error["message"] and "wait" in error["message"]
        assert len(realtime_standin.requests) == 5  # the refused one never reached OpenAI
        assert Conversation.objects.count() == 5

    def test_another_user_is_not_affected(self, realtime_standin, settings):
        settings.KEY_RATE_LIMIT_PER_USER = "2/minute"
        alice, bob = signed_in(make_user("alice")), signed_in(make_user("bob"))
        assert [post_session(alice).status_code for _ in range(3)] == [201, 201, 429]
        assert [post_session(bob).status_code for _ in range(3)] == [201, 201, 429]

    def test_daily_cap(self, realtime_standin, settings):
        settings.KEY_DAILY_LIMIT_PER_USER = "3/day"
        client = signed_in(make_user("alice"))
        assert [post_session(client).status_code for _ in range(3)] == [201] * 3
        refused = post_session(client)
        assert 3600 < retry_after(refused) <= 86400
        assert "for one day" in error_of(refused)["message"]
        assert "hours" in error_of(refused)["message"]

    def test_wait_is_the_longest_of_the_refusing_limits(self, realtime_standin, settings):
        settings.KEY_RATE_LIMIT_PER_USER, settings.KEY_DAILY_LIMIT_PER_USER = "2/minute", "2/day"
        client = signed_in(make_user("alice"))
        post_session(client), post_session(client)
        assert retry_after(post_session(client)) > 3600

    def test_bad_input_is_free(self, realtime_standin, settings):
        settings.KEY_RATE_LIMIT_PER_USER = "2/minute"
        client = signed_in(make_user("alice"))
        for body in ('{"voice": "nova"}', "{oops", '{"conversation": "x"}', "[]"):
            assert post_session(client, body).status_code == 400
        assert client.get("/api/realtime/sessions").status_code == 405
        assert [post_session(client).status_code for _ in range(3)] == [201, 201, 429]

    def test_failed_mints_count(self, realtime_standin, settings):
        """Retrying against a failing OpenAI is throttled like any other attempt."""
        settings.KEY_RATE_LIMIT_PER_USER = "2/minute"
        client = signed_in(make_user("alice"))
        realtime_standin.fail_next(500, times=2)
        assert [post_session(client).status_code for _ in range(3)] == [502, 502, 429]

    def test_unknown_conversations_count(self, realtime_standin, settings):
        settings.KEY_RATE_LIMIT_PER_USER = "2/minute"
        client = signed_in(make_user("alice"))
        body = {"conversation": str(uuid.uuid4())}
        assert [post_session(client, body).status_code for _ in range(3)] == [404, 404, 429]

    def test_a_burst_of_100(self, realtime_standin, settings):
        settings.KEY_RATE_LIMIT_PER_USER = "5/minute"
        client = signed_in(make_user("alice"))
        statuses = [post_session(client).status_code for _ in range(100)]
        assert statuses == [201] * 5 + [429] * 95
        assert len(realtime_standin.requests) == 5
        assert Conversation.objects.count() == 5


@pytest.mark.django_db
class TestPerAddress:
    def test_shared_address_limit(self, realtime_standin, settings):
        settings.KEY_RATE_LIMIT_PER_IP = "3/minute"
        here = {"REMOTE_ADDR": "203.0.113.7"}
        alice, bob, carol = (signed_in(make_user(name)) for name in ("alice", "bob", "carol"))
        assert post_session(alice, **here).status_code == 201
        assert post_session(alice, **here).status_code == 201
        assert post_session(bob, **here).status_code == 201
        refused = post_session(carol, **here)
        assert 1 <= retry_after(refused) <= 60
        assert "from your network" in error_of(refused)["message"]
        assert post_session(carol, REMOTE_ADDR="198.51.100.1").status_code == 201

    def test_a_refused_attempt_uses_none_of_the_users_allowance(self, realtime_standin, settings):
        settings.KEY_RATE_LIMIT_PER_IP, settings.KEY_RATE_LIMIT_PER_USER = "2/minute", "3/minute"
        alice = signed_in(make_user("alice"))
        busy, other = {"REMOTE_ADDR": "203.0.113.7"}, {"REMOTE_ADDR": "198.51.100.1"}
        assert [post_session(alice, **busy).status_code for _ in range(5)] == [201, 201, 429, 429, 429]
        # The three refusals took nothing from alice's 3/minute: one key is left.
        assert [post_session(alice, **other).status_code for _ in range(2)] == [201, 429]

    def test_behind_a_proxy_the_forwarded_address_counts(self, realtime_standin, settings):
        settings.NUM_PROXIES, settings.KEY_RATE_LIMIT_PER_IP = 1, "1/minute"
        alice, bob = signed_in(make_user("alice")), signed_in(make_user("bob"))
        assert post_session(alice, HTTP_X_FORWARDED_FOR="203.0.113.7").status_code == 201
        assert post_session(bob, HTTP_X_FORWARDED_FOR="198.51.100.1").status_code == 201
        assert post_session(bob, HTTP_X_FORWARDED_FOR="203.0.113.7").status_code == 429

    def test_an_ipv6_64_counts_as_one_address(self, realtime_standin, settings):
        """One subscriber's /64 holds 2^64 addresses: stepping through them must not reset the limit."""
        settings.KEY_RATE_LIMIT_PER_IP = "3/minute"
        alice, bob, carol = (signed_in(make_user(name)) for name in ("alice", "bob", "carol"))
        assert post_session(alice, REMOTE_ADDR="2001:db8:aa:1::1").status_code == 201
        assert post_session(bob, REMOTE_ADDR="2001:db8:aa:1::2").status_code == 201
        assert post_session(carol, REMOTE_ADDR="2001:db8:aa:1:dead:beef:0:3").status_code == 201
        refused = post_session(carol, REMOTE_ADDR="2001:db8:aa:1:ffff:ffff:ffff:ffff")
        assert "from your network" in error_of(refused)["message"]
        assert 1 <= retry_after(refused) <= 60
        # The next /64 is someone else.
        assert post_session(carol, REMOTE_ADDR="2001:db8:aa:2::1").status_code == 201
        assert len(realtime_standin.requests) == 4


@pytest.mark.django_db
class TestSiteDaily:
    def test_all_users_together_share_the_daily_cap(self, realtime_standin, settings):
        settings.KEY_DAILY_LIMIT_SITE = "3/day"
        alice, bob, carol = (signed_in(make_user(name)) for name in ("alice", "bob", "carol"))
        assert [post_session(alice).status_code for _ in range(2)] == [201, 201]
        assert post_session(bob).status_code == 201
        refused = post_session(carol)  # carol's first key of the day
        assert 3600 < retry_after(refused) <= 86400
        error = error_of(refused)
        assert error["code"] == "rate_limited"
        assert "as many voice sessions today as it allows for all its users together" in error["message"]
        assert "hours" in error["message"]
        assert len(realtime_standin.requests) == 3
        assert Conversation.objects.count() == 3

    def test_a_refusal_by_the_site_cap_uses_none_of_the_users_allowance(self, realtime_standin, settings):
        settings.KEY_DAILY_LIMIT_SITE, settings.KEY_DAILY_LIMIT_PER_USER = "1/day", "2/day"
        alice, bob = signed_in(make_user("alice")), signed_in(make_user("bob"))
        assert post_session(alice).status_code == 201
        assert [post_session(bob).status_code for _ in range(3)] == [429] * 3
        settings.KEY_DAILY_LIMIT_SITE = "10/day"  # the operator raises the cap
        assert [post_session(bob).status_code for _ in range(3)] == [201, 201, 429]


class TestAddressKey:
    @pytest.mark.parametrize(
        "address, key",
        [
            ("203.0.113.7", "203.0.113.7"),
            ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
            ("2001:DB8:1:2::FFFF", "2001:db8:1:2::/64"),  # one spelling per network
            ("::ffff:203.0.113.7", "203.0.113.7"),  # IPv4-mapped: the IPv4 address
            ("fe80::1%eth0", "fe80::/64"),
            ("not an address", "not an address"),
            ("", "unknown"),
        ],
    )
    def test_keys(self, address, key):
        assert ratelimit.address_key(address) == key


@pytest.mark.django_db
def test_storage_outage_refuses_with_503(realtime_standin, settings):
    client = signed_in(make_user("alice"))
    working = settings.RATELIMIT_STORAGE_URI
    settings.RATELIMIT_STORAGE_URI = "redis://127.0.0.1:1/0"  # nothing listens there
    try:
        response = post_session(client)
    finally:
        settings.RATELIMIT_STORAGE_URI = working  # before the autouse fixture resets the counters
    assert response.status_code == 503
    assert error_of(response)["code"] == "unavailable"
    assert realtime_standin.requests == []


# --- the async limiter itself, in one event loop and across loops ------------------------------


class TestAsyncLimiter:
    def test_consume_counts_every_rule_or_none(self):
        rules = [ratelimit.Rule("a", "3/minute", ("t", "a")), ratelimit.Rule("b", "2/minute", ("t", "b"))]

        async def attempts(n):
            return [await ratelimit.aconsume(*rules) for _ in range(n)]

        verdicts = asyncio.run(attempts(3))
        assert [v.allowed for v in verdicts] == [True, True, False]
        assert verdicts[2].refused_by == "b" and 1 <= verdicts[2].retry_after <= 60
        # "a" was counted twice, not three times: one more for it alone is still allowed.
        assert asyncio.run(ratelimit.aconsume(rules[0])).allowed
        assert not asyncio.run(ratelimit.aconsume(rules[0])).allowed

    def test_counters_survive_event_loops_and_are_shared_with_sync_callers(self):
        for _ in range(3):
            assert asyncio.run(ratelimit.ahit("3/minute", "t", "loops")).allowed
        assert not ratelimit.check("3/minute", "t", "loops").allowed
        assert not asyncio.run(ratelimit.acheck("3/minute", "t", "loops")).allowed
        ratelimit.reset()
        assert asyncio.run(ratelimit.acheck("3/minute", "t", "loops")).allowed

    @pytest.mark.asyncio
    async def test_concurrent_attempts_in_one_loop(self):
        rule = ratelimit.Rule("a", "5/minute", ("t", "concurrent"))
        verdicts = await asyncio.gather(*(ratelimit.aconsume(rule) for _ in range(50)))
        assert sum(v.allowed for v in verdicts) == 5


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_concurrent_burst_through_the_async_client(realtime_standin, settings):
    """100 requests at once in one event loop (as under daphne): exactly the limit gets keys."""
    settings.KEY_RATE_LIMIT_PER_USER = "5/minute"
    try:
        user = await sync_to_async(make_user)("alice")
        client = AsyncClient()
        await client.aforce_login(user)
        responses = await asyncio.gather(
            *(client.post("/api/realtime/sessions", data=b"", content_type="application/json") for _ in range(100))
        )
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [201] * 5 + [429] * 95
        assert await Conversation.objects.acount() == 5
        assert len(realtime_standin.requests) == 5
    finally:
        # The async ORM ran in asgiref's database thread; the test client leaves its connection
        # open, which would keep PostgreSQL from dropping the test database.
        await sync_to_async(connections.close_all)()


@pytest.mark.skipif(not __import__("os").environ.get("REDIS_URL"), reason="needs REDIS_URL")
def test_with_redis_the_async_path_counts_in_redis(settings):
    import redis

    assert settings.RATELIMIT_STORAGE_URI.startswith("redis://")

    async def three_hits():
        for _ in range(3):
            await ratelimit.ahit("5/minute", "t", "in-redis")
        return ratelimit._async_limiters(settings.RATELIMIT_STORAGE_URI).get()

    holder = asyncio.run(three_hits())
    assert holder.pool is not None  # redis-py's asyncio pool, disconnected with its loop
    keys = redis.Redis.from_url(settings.RATELIMIT_STORAGE_URI).keys("LIMITS*in-redis*")
    assert len(keys) == 1


@pytest.mark.parametrize("name", ["KEY_RATE_LIMIT_PER_USER", "KEY_DAILY_LIMIT_SITE", "SIGNUP_RATE_LIMIT_PER_IP"])
def test_a_malformed_limit_stops_the_start(name):
    from tests.support.processes import run_python

    result = run_python("import django; django.setup()", SECRET_KEY="x" * 50, **{name: "five a minute"})
    assert result.returncode != 0
    assert f"{name}='five a minute' is not a rate limit" in result.stderr

"""
Rate limits shared by every server process.

Built on the `limits` package rather than on hand-rolled cache counters: it has sync
strategies (the log-in form) and async ones (the key-issuance view) over the same storages —
this process's memory by default, Redis when REDIS_URL is set, so that every process counts
against the same limit. The moving window makes "N per period" exact: no burst of 2N across a
window boundary, as a fixed window would allow. (django-ratelimit was not an option: its
decorator is sync-only and it has been unmaintained since 2023.)

Async callers: with Redis they use limits' async strategy over redis-py's asyncio client, one
client per event loop (see loopbound.py), so the event loop never blocks on the network. With
the in-process memory storage they use the sync limiter directly: it does no I/O (a dict and a
thread lock, microseconds), it shares its counters with the sync callers and `reset()`, and it
is not tied to an event loop — limits' async memory storage binds its locks and expiry task to
one loop, which breaks as soon as requests run in loops of their own (the test client, WSGI).

Limits are written in limits' notation ("5/minute", "200/day"). Keys are tuples of strings,
namespaced by their first element ("login-account", "alice").
"""

import ipaddress
import math
import time
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings
from limits import parse
from limits.aio import strategies as async_strategies
from limits.errors import StorageError
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from voiceproject.loopbound import PerLoop

__all__ = [
    "Rule", "StorageError", "Verdict", "acheck", "aconsume", "address_key", "ahit", "check", "clear",
    "client_ip", "format_wait", "hit", "reset",
]


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: int = 0  # seconds until a new attempt can succeed (0 when allowed)
    refused_by: str = ""  # the name of the Rule that refused (aconsume only)


@dataclass(frozen=True)
class Rule:
    """One limit on one key, e.g. Rule("user-burst", "5/minute", ("realtime-user", "42"))."""

    name: str
    limit: str
    key: tuple[str, ...]


@lru_cache(maxsize=None)
def _limiter(uri: str) -> MovingWindowRateLimiter:
    return MovingWindowRateLimiter(storage_from_string(uri))


def _in_process(uri: str) -> bool:
    return uri.startswith("memory://")


class _AsyncLimiter:
    """limits' async limiter and, for Redis, the connection pool it uses (closed with the loop)."""

    def __init__(self, uri: str):
        options: dict = {"wrap_exceptions": True}  # an outage surfaces as limits' StorageError
        self.pool = None
        if uri.startswith(("redis://", "rediss://", "unix://")):
            import redis.asyncio

            self.pool = redis.asyncio.ConnectionPool.from_url(uri)
            options.update(implementation="redispy", connection_pool=self.pool)
        storage = storage_from_string(f"async+{uri}", **options)
        self.limiter = async_strategies.MovingWindowRateLimiter(storage)

    async def aclose(self) -> None:
        if self.pool is not None:
            await self.pool.disconnect()


@lru_cache(maxsize=None)
def _async_limiters(uri: str) -> PerLoop[_AsyncLimiter]:
    return PerLoop(lambda: _AsyncLimiter(uri))


def _verdict(allowed: bool, reset_time: float) -> Verdict:
    if allowed:
        return Verdict(True)
    return Verdict(False, max(1, math.ceil(reset_time - time.time())))


def hit(limit: str, *key: str) -> Verdict:
    """Count one attempt against `limit` for `key`; refused when the limit is already spent."""
    limiter, item = _limiter(settings.RATELIMIT_STORAGE_URI), parse(limit)
    if limiter.hit(item, *key):
        return Verdict(True)
    return _verdict(False, limiter.get_window_stats(item, *key).reset_time)


def check(limit: str, *key: str) -> Verdict:
    """Would one more attempt be allowed? Counts nothing."""
    limiter, item = _limiter(settings.RATELIMIT_STORAGE_URI), parse(limit)
    if limiter.test(item, *key):
        return Verdict(True)
    return _verdict(False, limiter.get_window_stats(item, *key).reset_time)


def clear(limit: str, *key: str) -> None:
    _limiter(settings.RATELIMIT_STORAGE_URI).clear(parse(limit), *key)


async def ahit(limit: str, *key: str) -> Verdict:
    """The async `hit`, for async views."""
    return await _arun("hit", hit, limit, key)


async def acheck(limit: str, *key: str) -> Verdict:
    """The async `check`: would one more attempt be allowed? Counts nothing."""
    return await _arun("test", check, limit, key)


async def _arun(method: str, in_process, limit: str, key: tuple[str, ...]) -> Verdict:
    """limits' async `method` ("hit" or "test") over the shared storage; the sync function for memory."""
    uri = settings.RATELIMIT_STORAGE_URI
    if _in_process(uri):
        return in_process(limit, *key)
    limiter, item = _async_limiters(uri).get().limiter, parse(limit)
    if await getattr(limiter, method)(item, *key):
        return Verdict(True)
    return _verdict(False, (await limiter.get_window_stats(item, *key)).reset_time)


async def aconsume(*rules: Rule) -> Verdict:
    """
    Count one attempt against every rule — or against none of them when any would refuse it,
    so that an attempt refused by one limit (say, a busy shared address) does not also use up
    the caller's other allowances. Refused: the rule with the longest wait, and that wait.

    Between the check and the hits another request may take the last slot; the hit then
    refuses (the limits stay exact), at the cost of the rules already hit in that rare case.
    """
    refused = []
    for rule in rules:
        verdict = await acheck(rule.limit, *rule.key)
        if not verdict.allowed:
            refused.append((rule, verdict))
    if not refused:
        for rule in rules:
            verdict = await ahit(rule.limit, *rule.key)
            if not verdict.allowed:
                refused.append((rule, verdict))
                break
        else:
            return Verdict(True)
    rule, verdict = max(refused, key=lambda pair: pair[1].retry_after)
    return Verdict(False, verdict.retry_after, rule.name)


def reset() -> None:
    """Forget every counter (tests, and an operator clearing a lock-out)."""
    _limiter(settings.RATELIMIT_STORAGE_URI).storage.reset()


def client_ip(request) -> str:
    """
    The address the limits count the caller under: the socket peer, or X-Forwarded-For behind
    NUM_PROXIES proxies — reduced to its /64 network for IPv6 (see `address_key`).
    """
    address = request.META.get("REMOTE_ADDR", "")
    if settings.NUM_PROXIES:
        forwarded = [p.strip() for p in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if p.strip()]
        if len(forwarded) >= settings.NUM_PROXIES:
            address = forwarded[-settings.NUM_PROXIES]
    return address_key(address)


def address_key(address: str) -> str:
    """
    One counter per IPv4 address and per IPv6 /64: a single subscriber is routinely handed a
    whole /64 (2^64 addresses), so counting each IPv6 address alone would let one client step
    around every per-address limit. IPv4-mapped IPv6 (::ffff:a.b.c.d) counts as its IPv4.
    Anything that does not parse is counted as written.
    """
    try:
        ip = ipaddress.ip_address(address.strip().removeprefix("[").removesuffix("]").split("%")[0])
    except ValueError:
        return address or "unknown"
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def format_wait(seconds: int) -> str:
    """'45 seconds', '1 minute', '3 minutes', '2 hours' — for messages a person reads."""
    if seconds < 60:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    if minutes < 120:
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    hours = math.ceil(minutes / 60)
    return f"{hours} hours"

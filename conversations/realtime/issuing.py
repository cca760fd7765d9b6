"""
Starting a voice session (one ephemeral key, one OpenAI Realtime session): may the caller start
one now, which conversation it belongs to, how it is configured, and what is recorded.

`aissue_key()` (REALTIME_CONNECT=browser: an ephemeral key for the page's own call) and
`astart_call()` (the server makes the call with the page's SDP offer) are the same three steps
around their own upstream call:

    admitted = await aadmit(user, address, wanted)      # configured? limits, conversation, plan
                                                        # (the user's preferences fill in the plan)
    secret = await upstream.create_client_secret(…)      # the upstream call (or create_call)
    conversation = await arecord(admitted)               # the conversation, or one more segment

A server-made call is then recorded with its id (calls.py): the server knows it for certain.

Every refusal is a typed error whose str() is the message for a person: NotConfigured,
RateLimited (with its verdict and retry_after), LimitsUnavailable, ConversationNotFound,
BudgetExhausted (budget.py: with its standing and retry_after), SessionLimitReached (continuing a
conversation past the session cap that no witness watched: caps.py), UpstreamError,
UpstreamTimeout, EphemeralKeysDisabled. The view maps the types to HTTP statuses and codes.

The order is deliberate: charge the limits, find the conversation to continue, mint the key,
record. So a failed mint leaves nothing behind — a new conversation is created only once OpenAI
has handed out a key, and a continued one is not touched until then. The alternative (create
first, delete or mark it failed when the mint fails) leaves an "active" orphan whenever the
clean-up does not run, e.g. when a client that hangs up cancels the view in the middle of the
upstream call. A key minted for a request that then fails to record just expires unused
(REALTIME_KEY_TTL). Everything that reaches OpenAI — or could, such as a request for an unknown
conversation — is counted before the upstream call, failed mints included, so that retrying a
failing upstream is throttled too.

The daily budget comes last in aadmit(): its check holds part of the budget for the session
(budget.hold()), so nothing that can refuse may come after it but the upstream call, and a failed
upstream call (or a cancelled request) gives the hold back at once (budget.drop()). A request the
budget refuses has been counted by the rate limits, so asking again and again is throttled too.
The hold names the conversation by its public id, chosen before the check for a new one, which
is then created with it: no second write to link the two.
"""

import logging
import uuid
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection

from accounts import languages, preferences
from accounts.models import Preferences
from conversations import access, budget, caps
from conversations.models import Conversation
from conversations.realtime import calls, upstream
from conversations.realtime.errors import IssuingError
from voiceproject import ratelimit

log = logging.getLogger(__name__)


# --- what can go wrong --------------------------------------------------------------------------


class RateLimited(IssuingError):
    def __init__(self, verdict: ratelimit.Verdict):
        self.verdict = verdict
        self.retry_after = verdict.retry_after  # seconds (the Retry-After header)
        super().__init__(limit_message(verdict))


class LimitsUnavailable(IssuingError):
    def __init__(self):
        super().__init__("The server cannot issue keys right now. Please try again soon.")


class EphemeralKeysDisabled(IssuingError):
    def __init__(self):
        super().__init__(
            "This server makes the calls to OpenAI itself and hands out no keys: "
            "post your SDP offer to /api/realtime/calls instead."
        )


class ConversationNotFound(IssuingError):
    def __init__(self):
        super().__init__("You have no conversation with that id.")


class SessionLimitReached(IssuingError):
    """The conversation ran past REALTIME_MAX_SESSION_SECONDS where the server could not end its
    calls (no witness): it gets no more sessions (caps.py)."""

    def __init__(self):
        super().__init__(
            f"This conversation has reached its {caps.cap_words()} limit. Start a new conversation to go on talking."
        )


# The upstream client's own, raised as they are.
NotConfigured = upstream.NotConfigured
UpstreamError = upstream.UpstreamError
UpstreamTimeout = upstream.UpstreamTimeout
BudgetExhausted = budget.BudgetExhausted


@dataclass(frozen=True)
class SessionRequest:
    """What the caller asked for; None means "choose for me"."""

    voice: str | None = None
    turn_detection: str | None = None
    language: str | None = None  # ISO-639-1; "" = detect automatically (None: choose for me)
    conversation: uuid.UUID | None = None  # continue this conversation of the caller's


@dataclass(frozen=True)
class SessionPlan:
    """How the new OpenAI session is configured."""

    model: str
    voice: str
    turn_detection: str
    language: str = languages.AUTOMATIC  # ISO-639-1; "" = the transcription detects it


def plan_session(
    request: SessionRequest, conversation: Conversation | None = None, preferences: Preferences | None = None
) -> SessionPlan:
    """
    What was asked for; otherwise, when continuing, what the conversation used so far (a new
    segment should sound like the old one, and is in the same language); otherwise the user's
    preferences; otherwise the server's defaults. The model is the server's choice: a
    conversation keeps its model while that is still allowed. A stored value the server no
    longer offers (a preference saved before the lists changed) is passed over, never sent.
    """
    model, voice, turn_detection = settings.REALTIME_MODEL, settings.REALTIME_VOICE, upstream.SERVER_VAD
    language = languages.AUTOMATIC
    for source in (preferences, conversation):  # the later one wins
        if source is None:
            continue
        if source.voice in upstream.VOICES:
            voice = source.voice
        if source.turn_detection in upstream.TURN_DETECTION_MODES:
            turn_detection = source.turn_detection
        if languages.is_known(source.language):
            language = source.language
    if conversation is not None and conversation.model in settings.REALTIME_MODELS:
        model = conversation.model
    return SessionPlan(
        model=model,
        voice=request.voice or voice,
        turn_detection=request.turn_detection or turn_detection,
        language=language if request.language is None else request.language,
    )


# --- rate limits ------------------------------------------------------------------------------

USER_BURST, USER_DAILY, ADDRESS_BURST, SITE_DAILY = "user", "user-daily", "address", "site-daily"


def key_limit_rules(user, address: str) -> list[ratelimit.Rule]:
    """
    The limits on minting keys: a burst limit per user and per client address (ratelimit.client_ip:
    an IPv6 /64 counts as one address), a daily cap per user and one for the whole site.
    """
    user_id = str(user.pk)
    return [
        ratelimit.Rule(USER_BURST, settings.KEY_RATE_LIMIT_PER_USER, ("realtime-key-user", user_id)),
        ratelimit.Rule(USER_DAILY, settings.KEY_DAILY_LIMIT_PER_USER, ("realtime-key-user-day", user_id)),
        ratelimit.Rule(ADDRESS_BURST, settings.KEY_RATE_LIMIT_PER_IP, ("realtime-key-ip", address)),
        ratelimit.Rule(SITE_DAILY, settings.KEY_DAILY_LIMIT_SITE, ("realtime-key-site-day", "all")),
    ]


async def acharge_key(user, address: str) -> ratelimit.Verdict:
    """Count one key for `user` at `address`, unless a limit refuses it (then count nothing)."""
    return await ratelimit.aconsume(*key_limit_rules(user, address))


def limit_message(verdict: ratelimit.Verdict) -> str:
    wait = ratelimit.format_wait(verdict.retry_after)
    if verdict.refused_by == SITE_DAILY:
        return (
            "This site has started as many voice sessions today as it allows for all its users together. "
            f"Please try again in {wait}."
        )
    if verdict.refused_by == USER_DAILY:
        return f"You have started as many voice sessions as allowed for one day. Please try again in {wait}."
    if verdict.refused_by == ADDRESS_BURST:
        return (
            "Too many voice sessions were started from your network just now. "
            f"Please wait {wait} and try again."
        )
    return f"You are starting voice sessions too quickly. Please wait {wait} and try again."


# --- the steps ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Admitted:
    """A request that may go upstream: whose, which conversation it continues, how configured."""

    user: object
    plan: SessionPlan
    conversation: Conversation | None = None
    # The public id of the conversation: the continued one's, or the new one's, chosen now so that
    # the budget's hold can name it before it exists.
    public_id: uuid.UUID | None = None
    hold: int | None = None  # the budget held for the session (budget.hold()), if the user has a budget


@dataclass(frozen=True)
class IssuedKey:
    conversation: Conversation
    plan: SessionPlan
    secret: upstream.ClientSecret


async def aadmit(user, address: str, wanted: SessionRequest) -> Admitted:
    """
    The checks before any upstream call, cheapest first: the server can reach OpenAI at all,
    the limits allow one more session (counted now), the conversation to continue is the
    caller's and may have another session (caps.py), the daily budget has room for it (held
    now: see the module's docstring). Raises NotConfigured, RateLimited, LimitsUnavailable,
    ConversationNotFound, SessionLimitReached or BudgetExhausted.
    """
    if not upstream.is_configured():
        raise NotConfigured()
    try:
        verdict = await acharge_key(user, address)
    except ratelimit.StorageError as exc:
        # Refuse rather than hand out keys unmetered: every key costs money.
        log.error("Rate-limit storage unavailable, refusing keys: %s", exc)
        raise LimitsUnavailable() from None
    if not verdict.allowed:
        raise RateLimited(verdict)
    conversation = None
    if wanted.conversation is not None:
        try:
            conversation = await access.aget_conversation(user, wanted.conversation)
        except access.NoAccess:
            raise ConversationNotFound() from None
        if await sync_to_async(caps.unwatched_past_cap)(conversation):
            raise SessionLimitReached()
    settled = wanted.voice and wanted.turn_detection and wanted.language is not None
    choices = None if settled else await preferences.afor_user(user)
    plan = plan_session(wanted, conversation, choices)
    public_id = conversation.uuid if conversation else uuid.uuid4()
    hold = await budget.ahold(user.pk, public_id)
    return Admitted(user=user, plan=plan, conversation=conversation, public_id=public_id, hold=hold)


async def _adrop_hold(admitted: Admitted) -> None:
    """Give back the budget held for a session that did not start; it lapses anyway if this fails."""
    try:
        await budget.adrop(admitted.hold)
    except Exception:  # never hide the failure that brought us here
        log.exception("Could not release the budget hold %s", admitted.hold)


async def arecord(admitted: Admitted) -> Conversation:
    """Record a session that went through upstream (ConversationNotFound: deleted meanwhile)."""
    try:
        conversation = await arecord_session(
            admitted.user, admitted.plan, admitted.conversation, public_id=admitted.public_id
        )
    except Conversation.DoesNotExist:
        raise ConversationNotFound() from None
    log.info(
        "Realtime session recorded: user %s, conversation %s, segment %s",
        admitted.user.pk, conversation.uuid, conversation.segments,
    )  # fmt: skip
    return conversation


@dataclass(frozen=True)
class StartedCall:
    conversation: Conversation
    plan: SessionPlan
    call: upstream.Call


async def aissue_key(user, address: str, wanted: SessionRequest) -> IssuedKey:
    """One ephemeral key for `user` calling from `address`; refusals are raised (see above)."""
    if settings.REALTIME_CONNECT == "server":  # before anything is counted
        raise EphemeralKeysDisabled()
    admitted = await aadmit(user, address, wanted)
    plan = admitted.plan
    try:
        secret = await upstream.create_client_secret(
            model=plan.model, voice=plan.voice, turn_detection=plan.turn_detection, language=plan.language
        )
        conversation = await arecord(admitted)
    except BaseException:  # CancelledError too: the client hung up mid-mint
        await _adrop_hold(admitted)
        raise
    return IssuedKey(conversation=conversation, plan=plan, secret=secret)


async def astart_call(user, address: str, wanted: SessionRequest, sdp: str) -> StartedCall:
    """
    Make `user`'s WebRTC call with OpenAI ourselves (the unified interface), with the browser's
    SDP offer `sdp` (upstream.is_sdp) and the session we choose, as for a key. The same checks
    and limits as aissue_key(); the call id is recorded as certain (source "server").
    """
    admitted = await aadmit(user, address, wanted)
    plan = admitted.plan
    try:
        # Inside the try, as create_client_secret() builds it: whatever fails gives the hold back.
        session = upstream.session_config(
            model=plan.model, voice=plan.voice, turn_detection=plan.turn_detection, language=plan.language
        )
        call = await upstream.create_call(sdp, session, safety_id=upstream.safety_identifier(user.pk))
        conversation = await arecord(admitted)
    except BaseException:  # CancelledError too: the client hung up mid-call
        await _adrop_hold(admitted)
        raise
    try:
        await calls.abind(conversation.pk, call.call_id, calls.SERVER)
    except calls.ConversationGone:  # deleted since arecord(): refused as arecord() refuses it
        raise ConversationNotFound() from None
    except calls.CallTaken:
        # A page claimed this id first (it cannot have known it, unless OpenAI reused it): the
        # call still goes ahead, and the first binding stands.
        log.error("Call %s made for conversation %s is bound to another conversation", call.call_id, conversation.uuid)
    return StartedCall(conversation=conversation, plan=plan, call=call)


async def arecord_session(
    user, plan: SessionPlan, conversation: Conversation | None = None, *, public_id: uuid.UUID | None = None
) -> Conversation:
    """
    Record a session that has its key: a new conversation (with the uuid `public_id`, if given),
    or one more segment of `conversation` (which becomes active again if it had ended). One query
    either way.
    """
    if conversation is None:
        return await Conversation.objects.acreate(
            **({"uuid": public_id} if public_id else {}),
            user=user,
            model=plan.model,
            voice=plan.voice,
            turn_detection=plan.turn_detection,
            language=plan.language,
            status=Conversation.Status.ACTIVE,
            segments=1,
        )
    changes = {
        "model": plan.model,
        "voice": plan.voice,
        "turn_detection": plan.turn_detection,
        "language": plan.language,
        "status": Conversation.Status.ACTIVE,
        "ended_at": None,
    }
    segment = await sync_to_async(_next_segment)(conversation.pk, user.pk, changes)
    if segment is None:  # deleted meanwhile
        raise Conversation.DoesNotExist
    for name, value in changes.items():
        setattr(conversation, name, value)
    conversation.segments = segment
    return conversation


def _next_segment(pk: int, user_id: int, changes: dict) -> int | None:
    """
    Count one more segment and apply `changes`, in one statement that returns the new count: two
    sessions started at once both count, and each learns its own number (the page records
    session n as recording n). PostgreSQL and SQLite (3.35+) both have UPDATE … RETURNING.
    """
    fields = [Conversation._meta.get_field(name) for name in changes]
    assignments = ", ".join(f"{connection.ops.quote_name(f.column)} = %s" for f in fields)
    segments = connection.ops.quote_name(Conversation._meta.get_field("segments").column)
    params = [f.get_db_prep_save(changes[f.name], connection) for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {connection.ops.quote_name(Conversation._meta.db_table)} "
            f"SET {segments} = {segments} + 1, {assignments} WHERE id = %s AND user_id = %s RETURNING {segments}",
            [*params, pk, user_id],
        )
        row = cursor.fetchone()
    return row[0] if row else None

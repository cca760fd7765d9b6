"""
Which OpenAI call (`rtc_…`) belongs to which conversation.

A call id is bound to one conversation once, by whoever reports it first: the server when it
made the call itself (REALTIME_CONNECT=server: the id is certain), otherwise the voice page with
the `call` frame on the transcript socket (it read the id from OpenAI's answer; nothing proves
it). Reporting the same id again for the same conversation changes nothing, so the page may
resend it after a reconnect; the same id for another conversation is refused.
"""

from django.db import IntegrityError

from conversations import witness
from conversations.models import RealtimeCall

BROWSER, SERVER = RealtimeCall.Source.BROWSER, RealtimeCall.Source.SERVER


class CallTaken(Exception):
    def __init__(self):
        super().__init__("This call belongs to another conversation.")


class ConversationGone(Exception):
    """The conversation was deleted before its call could be recorded."""


async def abind(conversation_id: int, call_id: str, source: str) -> RealtimeCall:
    """The call `call_id` of conversation `conversation_id`, recorded if new; CallTaken if it is
    another conversation's, ConversationGone if the conversation was deleted. The id must be
    valid (upstream.valid_call_id)."""
    try:
        call, _ = await RealtimeCall.objects.aget_or_create(
            call_id=call_id, defaults={"conversation_id": conversation_id, "source": source}
        )
    except IntegrityError:  # the conversation is gone (get_or_create itself retries a raced insert)
        raise ConversationGone() from None
    if call.conversation_id != conversation_id:
        raise CallTaken()
    witness.ensure_running()  # this process's witnesses attach to the call (or another process's do)
    return call

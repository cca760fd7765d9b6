"""
The witness: the server's own sideband connection to each live call, journaling what OpenAI sends
there as the server's events (source "server"), beside what the browser forwards.

    sideband.py    the connection (URL, key, events in, client events out)
    leases.py      which process holds which call (a lease on the RealtimeCall row)
    call.py        one call's witness (attach, journal, keep the session the server's, reconnect)
    supervisor.py  the per-process loop (claim, heartbeat, take over)

It starts by itself, lazily, in the server process's event loop: `ensure_running()` is called when a
call is bound to a conversation and when a transcript socket of a conversation with a call opens.
"""

from django.conf import settings


def enabled() -> bool:
    """REALTIME_WITNESS, and a real key to attach with."""
    return bool(settings.REALTIME_WITNESS and settings.OPENAI_API_KEY)


def ensure_running():
    """Start this event loop's supervisor if needed and have it look for calls now; it or None."""
    if not enabled():
        return None
    from conversations.witness.supervisor import supervisors

    supervisor = supervisors.get()
    supervisor.start()
    return supervisor

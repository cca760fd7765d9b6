"""
The app as `bench/socket_load.py --streams browser both` serves it:

    daphne bench.both_streams_asgi:application

The same application, except that a transcript socket opened with `?both=1` also has each new
event it receives journaled a second time, as the server's witness of the call would journal it:
through `conversations.witness.call.CallWitness`'s own journaling (batched per conversation while
a write is in flight, `server_frame` with the server's seq, `get_writer().write`, the socket's
acks not waiting for it). So the socket's conversation gets both streams, in the one process
and through the one journal writer, with no call and no sideband: what this measures is what the
second stream costs the ingest. Bench only; nothing in the app imports it.
"""

# ruff: noqa: I001  (the app first: importing it sets Django up)
import json

from voiceproject.asgi import application  # first: it sets Django up

from conversations.transcript.consumer import TranscriptConsumer
from conversations.witness.call import CallWitness
from conversations.witness.leases import Claimed
from conversations.witness.supervisor import Supervisor

__all__ = ["application"]

_supervisor = Supervisor(holder="bench-mirror")  # only its server seqs: never started
_receive = TranscriptConsumer.receive


async def receive(self, text_data=None, bytes_data=None):
    await _receive(self, text_data, bytes_data)
    if self.conversation_id is None or b"both=1" not in self.scope.get("query_string", b""):
        return
    try:
        frame = json.loads(text_data)
        seq, event = frame["seq"], frame["event"]
    except (TypeError, ValueError, KeyError):
        return
    if frame.get("type") != "event":
        return
    mirror = self.__dict__.get("_bench_mirror")
    if mirror is None:
        claimed = Claimed(pk=0, call_id=f"bench-{self.conversation_id}", conversation_id=self.conversation_id)
        mirror = self._bench_mirror = CallWitness(_supervisor, claimed)
        mirror.seen = 0
    if seq > mirror.seen:  # the witness sees each event once; the page's resends are not new
        mirror.seen = seq
        mirror._journal(event)


TranscriptConsumer.receive = receive

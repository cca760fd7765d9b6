from django.urls import path

from conversations.transcript.consumer import TranscriptConsumer
from conversations.transcript.live_consumer import HistoryLiveConsumer

websocket_urlpatterns = [
    path("ws/conversations/<uuid:conversation_id>/", TranscriptConsumer.as_asgi()),
    # Read-only: the transcript page of the owner (or a reviewer) follows the conversation.
    path("ws/conversations/<uuid:conversation_id>/live/", HistoryLiveConsumer.as_asgi()),
]

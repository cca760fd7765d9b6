"""Small helpers that make real rows for tests (no mocking of the ORM)."""

from django.contrib.auth import get_user_model

from conversations.models import Conversation

PASSWORD = "correct-horse-battery-staple"


def make_user(username="alice", password=PASSWORD, **extra):
    return get_user_model().objects.create_user(username=username, password=password, **extra)


def make_conversation(user, **extra):
    extra.setdefault("model", "gpt-realtime-2.1")
    extra.setdefault("voice", "marin")
    return Conversation.objects.create(user=user, **extra)

"""
Who may see which conversation: the one way to fetch a conversation for a user.

A user sees their own conversations. Where a caller allows it (`reviewer=True`: the live
transcript socket, the admin's live page), staff who may view conversations in the admin see
every conversation too. Anything else — someone else's conversation, an unknown id, a malformed
id, an anonymous user — raises the same `NoAccess`, so that no answer tells "exists" from "not
yours". Pages turn it into a 404, the API into its `not_found` error, sockets into close 4404.
"""

import uuid

from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from conversations.models import Conversation

REVIEW_PERMISSION = "conversations.view_conversation"


class NoAccess(Conversation.DoesNotExist):
    """No such conversation for this user (unknown and forbidden look the same)."""


def is_reviewer(user) -> bool:
    """Staff who may view every conversation (the admin's view permission)."""
    return bool(user.is_authenticated and user.is_staff and user.has_perm(REVIEW_PERMISSION))


def visible_to(user, *, reviewer: bool = False, queryset: QuerySet | None = None) -> QuerySet:
    """The conversations of `queryset` (default: all) that `user` may see."""
    queryset = Conversation.objects.all() if queryset is None else queryset
    if not user.is_authenticated:
        return queryset.none()
    if reviewer and is_reviewer(user):
        return queryset
    return queryset.filter(user=user)


def get_conversation(
    user,
    conversation_id: uuid.UUID | str | None = None,
    *,
    pk=None,
    reviewer: bool = False,
    queryset: QuerySet | None = None,
) -> Conversation:
    """
    The conversation with that public id (or, for the admin, that primary key) if `user` may
    see it; NoAccess otherwise. `queryset` narrows or annotates what is fetched (`.only(…)`).
    """
    lookup = {"pk": pk} if pk is not None else {"uuid": conversation_id}
    try:
        return visible_to(user, reviewer=reviewer, queryset=queryset).get(**lookup)
    except (Conversation.DoesNotExist, ValidationError, ValueError, TypeError):  # unknown or malformed id
        raise NoAccess("No such conversation.") from None


async def aget_conversation(user, conversation_id=None, **options) -> Conversation:
    """`get_conversation` for async views (the user must be resolved: no lazy `request.user`)."""
    return await sync_to_async(get_conversation)(user, conversation_id, **options)

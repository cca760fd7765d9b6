"""access.py: who may fetch which conversation — the owner, staff reviewers where allowed, no one else."""

import uuid

import pytest
from django.contrib.auth.models import AnonymousUser, Permission

from conversations import access
from conversations.models import Conversation
from tests.support.factories import make_conversation, make_user, signed_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def talk(alice):
    return make_conversation(alice)


@pytest.fixture
def viewer():
    """Staff with the view permission only: a reviewer, but no superuser."""
    user = make_user("reviewer", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_conversation"))
    return user


def test_the_owner_gets_their_conversation(alice, talk):
    assert access.get_conversation(alice, talk.uuid) == talk
    assert access.get_conversation(alice, str(talk.uuid)) == talk
    assert access.get_conversation(alice, pk=talk.pk, reviewer=True) == talk


def test_another_user_gets_the_same_error_as_for_an_unknown_id(bob, talk):
    for conversation_id in (talk.uuid, uuid.uuid4(), "not-a-uuid", None):
        with pytest.raises(access.NoAccess):
            access.get_conversation(bob, conversation_id, reviewer=True)
    with pytest.raises(access.NoAccess):
        access.get_conversation(bob, pk="nonsense")


def test_no_access_is_a_does_not_exist(bob, talk):
    """Callers that already catch Conversation.DoesNotExist keep working."""
    with pytest.raises(Conversation.DoesNotExist):
        access.get_conversation(bob, talk.uuid)


def test_anonymous_gets_nothing(talk):
    with pytest.raises(access.NoAccess):
        access.get_conversation(AnonymousUser(), talk.uuid, reviewer=True)


def test_a_reviewer_sees_others_conversations_only_where_allowed(viewer, talk):
    assert access.get_conversation(viewer, talk.uuid, reviewer=True) == talk
    with pytest.raises(access.NoAccess):  # the history pages are the owner's alone
        access.get_conversation(viewer, talk.uuid)


def test_staff_without_the_view_permission_are_not_reviewers(talk):
    intern = make_user("intern", is_staff=True)
    with pytest.raises(access.NoAccess):
        access.get_conversation(intern, talk.uuid, reviewer=True)


def test_the_queryset_narrows_what_is_fetched(alice, talk):
    only_ids = access.get_conversation(alice, talk.uuid, queryset=Conversation.objects.only("id", "uuid"))
    assert only_ids.get_deferred_fields() >= {"title", "model"}
    with pytest.raises(access.NoAccess):
        access.get_conversation(alice, talk.uuid, queryset=Conversation.objects.exclude(pk=talk.pk))


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_the_async_variant(alice, bob, talk):
    assert (await access.aget_conversation(alice, talk.uuid)).pk == talk.pk
    with pytest.raises(access.NoAccess):
        await access.aget_conversation(bob, talk.uuid)


def test_every_entry_point_refuses_someone_elses_conversation_alike(bob, talk, realtime_standin):
    """The history pages (404) and the key API (404 not_found, nothing minted) agree."""
    client = signed_in(bob)
    for path in ("", "delete/", "download/?format=json"):
        assert client.get(f"/conversations/{talk.uuid}/{path}").status_code == 404
    assert client.post(f"/conversations/{talk.uuid}/delete/").status_code == 404
    response = client.post(
        "/api/realtime/sessions", {"conversation": str(talk.uuid)}, content_type="application/json"
    )
    assert response.status_code == 404
    assert response.json()["error"] == {"code": "not_found", "message": "You have no conversation with that id."}
    assert realtime_standin.requests == []
    assert Conversation.objects.filter(pk=talk.pk).exists()

import pytest
from django.db import IntegrityError, transaction

from conversations.models import Event, ResponseUsage, Utterance
from tests.support.factories import make_conversation, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def conversation():
    return make_conversation(make_user())


def test_conversation_has_a_public_uuid(conversation):
    other = make_conversation(conversation.user)
    assert conversation.uuid != other.uuid
    assert conversation.get_absolute_url() == f"/conversations/{conversation.uuid}/"


def test_journal_seq_is_unique_per_conversation(conversation):
    Event.objects.create(conversation=conversation, seq=1, type="x", payload={})
    with pytest.raises(IntegrityError), transaction.atomic():
        Event.objects.create(conversation=conversation, seq=1, type="y", payload={})
    # The same seq in another conversation is fine.
    Event.objects.create(conversation=make_conversation(conversation.user), seq=1, type="x", payload={})


def test_journal_seq_must_be_positive(conversation):
    with pytest.raises(IntegrityError), transaction.atomic():
        Event.objects.create(conversation=conversation, seq=0, type="x", payload={})


def test_one_utterance_per_item(conversation):
    Utterance.objects.create(conversation=conversation, item_id="item_1", role="user", position=0)
    with pytest.raises(IntegrityError), transaction.atomic():
        Utterance.objects.create(conversation=conversation, item_id="item_1", role="user", position=1)


def test_positions_are_unique(conversation):
    Utterance.objects.create(conversation=conversation, item_id="item_1", role="user", position=0)
    with pytest.raises(IntegrityError), transaction.atomic():
        Utterance.objects.create(conversation=conversation, item_id="item_2", role="assistant", position=0)


def test_usage_once_per_response(conversation):
    ResponseUsage.objects.create(conversation=conversation, response_id="resp_1", input_tokens=3)
    with pytest.raises(IntegrityError), transaction.atomic():
        ResponseUsage.objects.create(conversation=conversation, response_id="resp_1", input_tokens=3)


def test_deleting_a_conversation_removes_what_hangs_off_it(conversation):
    Event.objects.create(conversation=conversation, seq=1, type="x", payload={})
    Utterance.objects.create(conversation=conversation, item_id="item_1", role="user", position=0)
    ResponseUsage.objects.create(conversation=conversation, response_id="resp_1")
    conversation.delete()
    assert not Event.objects.exists()
    assert not Utterance.objects.exists()
    assert not ResponseUsage.objects.exists()

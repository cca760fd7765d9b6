"""
The user's own history: the list, one transcript, downloads and deletion.

A user only ever sees their own conversations: every view of one conversation looks it up
through `access` (the `owned_conversation` decorator), so someone else's is a 404, the same as
one that does not exist.
"""

from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.formats import date_format
from django.views.decorators.http import require_GET, require_http_methods

from conversations import access, actions
from conversations.export import downloads
from conversations.history import pricing, selectors
from conversations.history.forms import HistoryFilterForm
from conversations.models import Conversation

PAGE_SIZE = 20


def owned_conversation(view):
    """Pass the view the user's conversation named in the URL instead of its id; 404 otherwise."""

    @wraps(view)
    def wrapper(request, conversation_id, *args, **kwargs):
        try:
            conversation = access.get_conversation(request.user, conversation_id)
        except access.NoAccess:
            raise Http404("No such conversation.") from None
        return view(request, conversation, *args, **kwargs)

    return wrapper


@login_required
@require_GET
def conversation_list(request):
    form = HistoryFilterForm(request.GET)
    filters = form.filters()
    conversations = selectors.history_list(request.user, **filters)
    page = Paginator(conversations, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "conversations/list.html",
        {
            "form": form,
            "filtering": any(filters.values()),
            "search": filters["text"],
            "page": page,
            "conversations": page.object_list,
            "has_any": page.paginator.count > 0 or selectors.owned_by(request.user).exists(),
            "download_formats": downloads.menu(),
        },
    )


@login_required
@require_GET
@owned_conversation
def conversation_detail(request, conversation):
    return render(
        request,
        "conversations/detail.html",
        {
            "conversation": conversation,
            "utterances": selectors.transcript(conversation),
            "cost": pricing.estimate_cost(conversation, conversation.model),
            "labels": selectors.transcript_labels(),
            "download_formats": downloads.menu(),
            "live_url": selectors.live_path(conversation),
            "recordings": selectors.recordings_for(conversation),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
@owned_conversation
def conversation_delete(request, conversation):
    """GET asks for confirmation; POST deletes the conversation with its journal and usage."""
    if request.method == "POST":
        label = (
            conversation.title
            or f"the conversation of {date_format(timezone.localtime(conversation.created_at), 'j F Y, H:i')}"
        )
        actions.delete_conversations(Conversation.objects.filter(pk=conversation.pk))
        messages.success(request, f"Deleted {label}.")
        return redirect("conversations:list")
    return render(
        request,
        "conversations/confirm_delete.html",
        {
            "conversation": conversation,
            "turns": conversation.utterances.count(),
            "recordings": conversation.recordings.count(),
        },
    )


@login_required
@require_GET
@owned_conversation
def conversation_download(request, conversation):
    """One conversation in the format asked for (?format=jsonl|json|csv|markdown)."""
    return downloads.response(
        request, Conversation.objects.filter(pk=conversation.pk), f"conversation-{conversation.uuid}"
    )


@login_required
@require_GET
def download_all(request):
    """Everything the user has said and heard: all their conversations, oldest first."""
    return downloads.response(
        request, selectors.owned_by(request.user), f"{request.user.get_username()}-conversations"
    )

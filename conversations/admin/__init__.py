"""
Staff review of conversations.

What was said is never edited here: utterances, the event journal and usage records are
read-only everywhere; on a conversation only the review fields (reviewed, flagged, note) can
change. Deleting a conversation is allowed and goes through the shared delete function.
Every list is annotated (turn counts, durations) so its query count does not grow with rows,
and no page grows with what a conversation holds: the transcript inline shows the first lines
and links to the rest, long lines are cut short, and filters list known values, not every value.
"""

import json

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.forms import Script
from django.forms.models import BaseInlineFormSet
from django.template.defaultfilters import pluralize
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format, time_format
from django.utils.html import format_html, format_html_join
from django.utils.text import smart_split, unescape_string_literal

from conversations import access, actions
from conversations.admin.filters import (
    ConflictsFilter,
    EventTypeFilter,
    FailedTranscriptionFilter,
    InterruptedFilter,
    LanguageFilter,
    ModelFilter,
    UserFilter,
    WitnessedFilter,
    WitnessStateFilter,
)
from conversations.export import downloads, formats
from conversations.history import pricing, selectors, usage
from conversations.history.forms import DateRangeForm
from conversations.models import (
    Conversation,
    Event,
    RealtimeCall,
    ResponseUsage,
    TranscriptionUsage,
    Utterance,
)
from conversations.templatetags import history_format
from conversations.templatetags.history_format import clock, tokens
from voiceproject.admin_selection import SelectionIdsMixin

admin.site.site_header = "voiceproject administration"
admin.site.site_title = "voiceproject admin"
admin.site.index_title = "Review and administration"
# The review lists are wide (nine columns and the filters): they need the room more.
admin.site.enable_nav_sidebar = False


class ReadOnlyMixin:
    """No one adds, edits or deletes what was said: these rows are the journal or derive from it."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


TEXT_PREVIEW_CHARS = 1000  # of one line, in the inline and the list of lines


def text_preview(utterance) -> str:
    text = utterance.text
    if len(text) <= TEXT_PREVIEW_CHARS:
        return text
    return f"{text[:TEXT_PREVIEW_CHARS]}… ({len(text) - TEXT_PREVIEW_CHARS:,} more characters)"


class FirstLinesFormSet(BaseInlineFormSet):
    """Only the first `max_lines` lines: a conversation can hold any number (the page would not)."""

    max_lines = 200

    def get_queryset(self):
        if not hasattr(self, "_queryset"):
            self._queryset = super().get_queryset()[: self.max_lines]
        return self._queryset


class UtteranceInline(ReadOnlyMixin, admin.TabularInline):
    model = Utterance
    formset = FirstLinesFormSet
    # The template adds a link to every line when there are more than the formset shows.
    template = "admin/conversations/includes/transcript_inline.html"
    fields = ("position", "said_at", "role", "kind", "status_label", "text_shown", "error", "verified_mark")
    readonly_fields = fields
    ordering = ("position",)
    extra = 0
    verbose_name = "line"
    verbose_name_plural = "Transcript"
    empty_value_display = ""  # no "-" for an empty text or error: the status says why
    classes = ("transcript-inline",)

    @admin.display(description="status")
    def status_label(self, utterance):
        return utterance.get_status_display()

    @admin.display(description="verified")
    def verified_mark(self, utterance):
        # Seen by the server's witness; otherwise only the browser's word.
        return "✓ verified" if utterance.verified else "—"

    @admin.display(description="time")
    def said_at(self, utterance):
        return time_format(timezone.localtime(utterance.created_at), "H:i:s")

    @admin.display(description="text")
    def text_shown(self, utterance):
        return text_preview(utterance)


@admin.register(Conversation)
class ConversationAdmin(SelectionIdsMixin, admin.ModelAdmin):
    # A bulk action on a selection that is not conversation ids is a 400 (the mixin's docstring).
    list_display = (
        "display_title",
        "user",
        "started",
        "duration_display",
        "turns_display",
        "witness_display",
        "verified_display",
        "conflicts",
        "usage_display",
        "cost_display",
        "language_display",
        "status",
        "review_state",
    )
    list_display_links = ("display_title",)
    list_filter = (
        UserFilter,
        ("created_at", admin.DateFieldListFilter),
        ModelFilter,
        LanguageFilter,
        "status",
        "flagged",
        "reviewed",
        FailedTranscriptionFilter,
        InterruptedFilter,
        ConflictsFilter,
        WitnessedFilter,
        WitnessStateFilter,
    )
    search_fields = ("title", "user__username")  # and the transcript: see get_search_results
    search_help_text = "Searches usernames, titles and what was said."
    list_select_related = ("user",)
    list_per_page = 50
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    actions = ("mark_reviewed", "flag", "unflag", "export_jsonl", "export_csv")
    inlines = (UtteranceInline,)
    change_list_template = "admin/conversations/conversation/change_list.html"
    view_on_site = False  # the history page is the owner's alone: staff would get a 404

    class Media:
        css = {"all": ("history/admin.css",)}  # noqa: RUF012 (Django's Media declaration)
        # The transcript page's player script: a recording of several sessions plays in order.
        js = (Script("history/player.js", type="module"),)

    fieldsets = (
        (
            None,
            {
                "fields": (
                    "display_title",
                    "user",
                    "uuid",
                    "status",
                    "started",
                    "duration_display",
                    "model",
                    "voice",
                    "turn_detection",
                    "language_display",
                )
            },
        ),
        (
            "Review",
            {
                "fields": (
                    "reviewed", "flagged", "review_note", "reviewed_at", "reviewed_by", "verified_display", "conflicts",
                )
            },
        ),
        ("Witness", {"fields": ("witness_display", "calls_table")}),
        ("Recording", {"fields": ("recording_player",)}),
        (
            "Times",
            {
                "fields": ("created_at", "started_at", "last_activity_at", "ended_at", "segments"),
                "classes": ("collapse",),
            },
        ),
        ("Usage", {"fields": ("usage_table", "cost_display")}),
        ("Debugging", {"fields": ("journal", "links")}),
    )
    EDITABLE = ("reviewed", "flagged", "review_note")

    def get_readonly_fields(self, request, obj=None):
        editable = set(self.EDITABLE)
        return [name for name in flatten(self.fieldsets) if name not in editable]

    def has_add_permission(self, request):
        # Conversations begin in the browser, never here.
        return False

    def get_queryset(self, request):
        queryset = super().get_queryset(request).select_related("user", "reviewed_by")
        return selectors.with_transcription_usage(
            selectors.with_first_line(
                selectors.with_witness(
                    selectors.with_verified(selectors.with_turns(selectors.with_duration(queryset)))
                )
            )
        )

    # --- Columns and read-only fields ---------------------------------------------------------
    @admin.display(description="conversation", ordering="title")
    def display_title(self, conversation):
        return selectors.display_title(conversation, length=60)

    @admin.display(description="language", ordering="language")
    def language_display(self, conversation):
        return history_format.language_name(conversation.language)

    @admin.display(description="started", ordering="started_at")
    def started(self, conversation):
        return date_format(
            timezone.localtime(conversation.started_at or conversation.created_at), "j M Y, H:i"
        )

    @admin.display(description="duration", ordering="duration_value")
    def duration_display(self, conversation):
        return clock(conversation.duration)

    @admin.display(description="turns", ordering="turns")
    def turns_display(self, conversation):
        return conversation.turns

    @admin.display(description="verified lines", ordering="verified_lines")
    def verified_display(self, conversation):
        """The share of lines the server's witness saw end itself (the rest: the browser's word)."""
        if not conversation.turns:
            return "—"
        share = round(100 * conversation.verified_lines / conversation.turns)
        return f"{conversation.verified_lines} of {conversation.turns} ({share} %)"

    @admin.display(description="witness", ordering="witness_state")
    def witness_display(self, conversation):
        """The state of the server's witness on the latest call (with several calls, how many of
        them it attached to): "none" without a call."""
        state = conversation.witness_state or RealtimeCall.WitnessState.NONE
        label = format_html('<span class="witness-{}">{}</span>', state, state)
        if conversation.call_count <= 1:
            return label
        return format_html(
            "{} <span class=\"muted\">(latest call; {} of {} attached)</span>",
            label, conversation.calls_attached, conversation.call_count,
        )

    CALLS_SHOWN = 50  # a conversation may hold any number of calls (each Start is one)

    @admin.display(description="calls")
    def calls_table(self, conversation):
        calls = list(conversation.calls.order_by("created_at", "pk")[: self.CALLS_SHOWN])
        if not calls:
            return "No call reported."
        return render_to_string(
            "admin/conversations/includes/calls_table.html",
            {"calls": calls, "more": max(0, conversation.call_count - len(calls))},
        )

    @admin.display(description="audio")
    def recording_player(self, conversation):
        """The same players as the transcript page (staff may read every recording)."""
        recordings = selectors.recordings_for(conversation)
        if not recordings:
            return "No recording."
        return render_to_string("includes/recording_player.html", {"recordings": recordings})

    @admin.display(description="tokens")
    def usage_table(self, conversation):
        return render_to_string("admin/conversations/includes/usage_table.html", {"usage": conversation})

    @admin.display(description="tokens (in / out)")
    def usage_display(self, conversation):
        return f"{tokens(conversation.input_tokens)} / {tokens(conversation.output_tokens)}"

    @admin.display(description="est. cost")
    def cost_display(self, conversation):
        cost = pricing.conversation_cost(conversation, conversation, prefix=selectors.TRANSCRIPTION_PREFIX)
        return pricing.format_usd(cost) if cost is not None else "—"

    @admin.display(description="review")
    def review_state(self, conversation):
        states = []
        if conversation.flagged:
            states.append(("review-flagged", "⚑ flagged"))
        if conversation.reviewed:
            states.append(("review-done", "✓ reviewed"))
        return format_html_join(" ", '<span class="{}">{}</span>', states or [("review-todo", "to review")])

    @admin.display(description="event journal")
    def journal(self, conversation):
        count = conversation.events.count()
        if not count:
            return "No events stored."
        url = reverse("admin:conversations_event_changelist") + f"?conversation__id__exact={conversation.pk}"
        return format_html(
            '<a href="{}">{} event{} — open the journal</a>', url, count, "" if count == 1 else "s"
        )

    @admin.display(description="also")
    def links(self, conversation):
        usages = (
            reverse("admin:conversations_responseusage_changelist")
            + f"?conversation__id__exact={conversation.pk}"
        )
        others = (
            reverse("admin:conversations_conversation_changelist")
            + f"?user__id__exact={conversation.user_id}"
        )
        transcriptions = (
            reverse("admin:conversations_transcriptionusage_changelist")
            + f"?conversation__id__exact={conversation.pk}"
        )
        return format_html(
            '<a href="{}">usage per response</a> · <a href="{}">per transcription</a> · '
            '<a href="{}">all conversations of {}</a>',
            usages,
            transcriptions,
            others,
            conversation.user.get_username(),
        )

    # --- Search: username, title and what was said --------------------------------------------
    def get_search_results(self, request, queryset, search_term):
        # The default would join the utterances (duplicate rows, then DISTINCT); an EXISTS
        # subquery per term finds the same conversations without either.
        for term in smart_split(search_term):
            if term[0] in "\"'" and term[0] == term[-1]:
                term = unescape_string_literal(term)
            queryset = queryset.filter(
                selectors.matches_title_or_user(term) | selectors.transcript_contains(term)
            )
        return queryset, False

    # --- Saving and deleting -----------------------------------------------------------------
    def save_model(self, request, obj, form, change):
        actions.save_review(obj, request.user, form.changed_data)

    def delete_model(self, request, obj):
        actions.delete_conversations(Conversation.objects.filter(pk=obj.pk))

    def delete_queryset(self, request, queryset):
        actions.delete_conversations(queryset)

    def get_deleted_objects(self, objs, request):
        # Django's default lists every related row (thousands of journal events) and refuses
        # because those rows are read-only here; deleting a conversation takes them with it.
        conversations = Conversation.objects.filter(pk__in=[obj.pk for obj in objs])
        counts = actions.count_conversations(conversations)
        summary = [
            format_html('{} <span class="muted">({}, {} turns)</span>', str(c), c.user, c.turns)
            for c in selectors.with_turns(conversations.select_related("user"))
        ]
        model_count = {
            "conversations": counts[Conversation._meta.label],
            "transcript lines": counts[Utterance._meta.label],
            "journal events": counts[Event._meta.label],
            "usage records": counts[ResponseUsage._meta.label] + counts[TranscriptionUsage._meta.label],
            "recordings": counts["conversations.Recording"],
        }
        perms_needed = set() if self.has_delete_permission(request) else {"conversation"}
        return summary, model_count, perms_needed, []

    # --- Actions -----------------------------------------------------------------------------
    # Each action needs the permission it exercises: view-only staff may read and export, not review.
    @admin.action(description="Mark selected conversations as reviewed", permissions=["change"])
    def mark_reviewed(self, request, queryset):
        count = actions.set_reviewed(queryset, request.user)
        self.message_user(request, f"Marked {conversations(count)} as reviewed.", messages.SUCCESS)

    @admin.action(description="Flag selected conversations", permissions=["change"])
    def flag(self, request, queryset):
        count = actions.set_flagged(queryset, True)
        self.message_user(request, f"Flagged {conversations(count)}.", messages.SUCCESS)

    @admin.action(description="Remove the flag from selected conversations", permissions=["change"])
    def unflag(self, request, queryset):
        count = actions.set_flagged(queryset, False)
        self.message_user(request, f"Removed the flag from {conversations(count)}.", messages.SUCCESS)

    @admin.action(
        description=f"Export selected conversations ({formats.FORMATS['jsonl'].label})", permissions=["view"]
    )
    def export_jsonl(self, request, queryset):
        return self._export(queryset, "jsonl")

    @admin.action(
        description=f"Export selected conversations ({formats.FORMATS['csv'].label})", permissions=["view"]
    )
    def export_csv(self, request, queryset):
        return self._export(queryset, "csv")

    def _export(self, queryset, format_name):
        stamp = timezone.localtime().strftime("%Y%m%d-%H%M%S")
        return downloads.attachment(queryset, format_name, f"conversations-{stamp}", include_review=True)

    # --- The usage view ----------------------------------------------------------------------
    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("usage/", wrap(self.usage_view), name="conversations_conversation_usage"),
            path("<path:object_id>/live/", wrap(self.live_view), name="conversations_conversation_live"),
            *super().get_urls(),
        ]

    LIVE_LINES = 200  # the latest lines the live page starts with; the list of lines has them all

    def live_view(self, request, object_id):
        """The transcript as it is being said, for a reviewer (the page's live.js socket)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            conversation = access.get_conversation(
                request.user, pk=object_id, reviewer=True, queryset=self.get_queryset(request)
            )
        except access.NoAccess:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        latest = list(selectors.transcript(conversation).reverse()[: self.LIVE_LINES])
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": conversation,
            "title": f"Live transcript: {self.display_title(conversation)}",
            "utterances": latest[::-1],
            "earlier_lines": conversation.turns - len(latest),
            "all_lines_url": reverse("admin:conversations_utterance_changelist")
            + f"?conversation__id__exact={conversation.pk}",
            "labels": selectors.transcript_labels(conversation.user.get_username()),
            "live_url": selectors.live_path(conversation),
        }
        return TemplateResponse(request, "admin/conversations/live.html", context)

    def usage_view(self, request):
        """Tokens and estimated cost per user and per day, over a date range (default: 30 days), and
        each user's spend over the last 24 hours against their daily budget."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = DateRangeForm(request.GET or DateRangeForm.last_days(30))
        conversations = selectors.created_between(Conversation.objects.all(), **form.range())
        per_user = usage.by_user(conversations)
        per_day = usage.by_day(conversations)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Usage per user and per day",
            "form": form,
            "per_user": per_user,
            "per_day": per_day,
            "user_total": usage.total(per_user),
            # Always the last 24 hours, whatever the range: what the budgets count.
            "budgets": usage.budget_rows(),
            "hung_up": usage.hung_up_calls(),
            "hung_up_shown": usage.HUNG_UP_SHOWN,
            "changelist_url": reverse("admin:conversations_conversation_changelist"),
        }
        return TemplateResponse(request, "admin/conversations/usage.html", context)


def conversations(count: int) -> str:
    return f"{count} conversation{pluralize(count)}"


def flatten(fieldsets):
    for _name, options in fieldsets:
        for entry in options["fields"]:
            yield from entry if isinstance(entry, tuple) else (entry,)


@admin.register(Utterance)
class UtteranceAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("conversation", "position", "role", "kind", "status", "verified", "text_shown")
    list_select_related = ("conversation",)
    list_filter = ("role", "kind", "status", "verified")
    search_fields = ("text",)
    show_full_result_count = False

    @admin.display(description="text")
    def text_shown(self, utterance):
        return text_preview(utterance)


@admin.register(Event)
class EventAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """The journal, for debugging: what the browser forwarded and what the server's witness saw,
    exactly as received, in the order they were stored."""

    list_display = ("seq", "source", "type", "conversation", "received_at")
    list_select_related = ("conversation",)
    list_filter = ("source", EventTypeFilter)
    list_per_page = 200
    ordering = ("conversation", "id")
    show_full_result_count = False
    fields = ("conversation", "source", "seq", "type", "received_at", "repairs", "payload_pretty")
    readonly_fields = fields

    class Media:
        css = {"all": ("history/admin.css",)}  # noqa: RUF012 (Django's Media declaration)

    @admin.display(description="payload")
    def payload_pretty(self, event):
        return format_html(
            '<pre class="json-payload">{}</pre>', json.dumps(event.payload, indent=2, ensure_ascii=False)
        )


@admin.register(ResponseUsage)
class ResponseUsageAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("response_id", "conversation", "status", "source", "input_tokens", "output_tokens", "created_at")
    list_select_related = ("conversation",)
    show_full_result_count = False


@admin.register(TranscriptionUsage)
class TranscriptionUsageAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "item_id",
        "conversation",
        "source",
        "input_tokens",
        "output_tokens",
        "seconds",
        "created_at",
    )
    list_filter = ("source",)
    list_select_related = ("conversation",)
    show_full_result_count = False

"""List filters of the conversation admin that look into the transcript (EXISTS subqueries)."""

from django.contrib import admin

from conversations.history import selectors
from conversations.models import Utterance


class UtteranceStatusFilter(admin.SimpleListFilter):
    """Conversations with (or without) at least one utterance of `status`."""

    status: str

    def lookups(self, request, model_admin):
        return (("yes", "Yes"), ("no", "No"))

    def queryset(self, request, queryset):
        condition = selectors.has_utterance_status(self.status)
        if self.value() == "yes":
            return queryset.filter(condition)
        if self.value() == "no":
            return queryset.filter(~condition)
        return queryset


class FailedTranscriptionFilter(UtteranceStatusFilter):
    title = "failed transcriptions"
    parameter_name = "has_failed"
    status = Utterance.Status.FAILED


class InterruptedFilter(UtteranceStatusFilter):
    title = "interrupted replies"
    parameter_name = "has_interrupted"
    status = Utterance.Status.INTERRUPTED


class ConflictsFilter(admin.SimpleListFilter):
    """Conversations where events contradicted a closed line (another role or final text)."""

    title = "has conflicts"
    parameter_name = "has_conflicts"

    def lookups(self, request, model_admin):
        return (("yes", "Yes"), ("no", "No"))

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(conflicts__gt=0)
        if self.value() == "no":
            return queryset.filter(conflicts=0)
        return queryset

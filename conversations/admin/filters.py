"""
List filters of the admin: those that look into the transcript (EXISTS subqueries), and
filters whose list of choices stays short however many distinct values the table holds.
"""

from collections.abc import Sequence

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError

from accounts import languages
from conversations.history import selectors
from conversations.models import Conversation, RealtimeCall, Utterance
from conversations.transcript.forwarded import forwarded_types


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
    """Conversations where events contradicted a line (another role or final text), the browser's
    and the witness's versions of a line included."""

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


class WitnessedFilter(admin.SimpleListFilter):
    """Conversations the server's witness saw (some events of its own), or did not: those hold
    only what the browser reported."""

    title = "witnessed by the server"
    parameter_name = "witnessed"

    def lookups(self, request, model_admin):
        return (("yes", "Witnessed"), ("no", "Unwitnessed"))

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(selectors.witnessed())
        if self.value() == "no":
            return queryset.filter(~selectors.witnessed())
        return queryset


class WitnessStateFilter(admin.SimpleListFilter):
    """By the witness state of the conversation's latest call (the `witness_state` annotation of
    selectors.with_witness), or conversations without a call."""

    title = "witness state (latest call)"
    parameter_name = "witness_state"
    NO_CALL = "no_call"

    def lookups(self, request, model_admin):
        return [*RealtimeCall.WitnessState.choices, (self.NO_CALL, "No call reported")]

    def queryset(self, request, queryset):
        value = self.value()
        if value == self.NO_CALL:
            return queryset.filter(witness_state__isnull=True)
        if value in RealtimeCall.WitnessState.values:
            return queryset.filter(witness_state=value)
        return queryset


# --- Bounded value filters -------------------------------------------------------------------
# Django's default filter for a column lists every distinct value in the table. Event types
# come from the browser and models from imports, so an attacker decides how long such a list
# gets: these filters list the known values, the value asked for and "Other" instead.



class KnownValuesFilter(admin.SimpleListFilter):
    """Filter `field` by one of `known_values()`, by any value given in the URL, or "Other"."""

    field: str
    OTHER = "_other"

    def known_values(self) -> Sequence[str]:
        raise NotImplementedError

    def lookups(self, request, model_admin):
        known = list(self.known_values())
        choices = [(value, value) for value in known]
        value = self.value()
        if value and value != self.OTHER and value not in known:
            choices.append((value, value))  # a link from elsewhere: show what is filtered
        choices.append((self.OTHER, "Other"))
        return choices

    def queryset(self, request, queryset):
        value = self.value()
        if value == self.OTHER:
            return queryset.exclude(**{f"{self.field}__in": list(self.known_values())})
        if value:
            return queryset.filter(**{self.field: value})
        return queryset


class EventTypeFilter(KnownValuesFilter):
    title = "type"
    parameter_name = field = "type"

    def known_values(self):
        return forwarded_types()


class ModelFilter(KnownValuesFilter):
    title = "model"
    parameter_name = field = "model"

    def known_values(self):
        return settings.REALTIME_MODELS


class UserFilter(admin.SimpleListFilter):
    """
    The conversations of one user, as linked from the usage view and a conversation's page.
    Lists only the chosen user, never every user who has talked: the search finds users by name.
    """

    title = "user"
    parameter_name = "user__id__exact"

    def lookups(self, request, model_admin):
        user_id = self.user_id()
        if user_id is None:
            return ()
        user = get_user_model().objects.filter(pk=user_id).first()
        return ((str(user_id), user.get_username() if user else f"#{user_id} (deleted)"),)

    def user_id(self) -> int | None:
        value = self.value()
        if value is None:
            return None
        try:
            return get_user_model()._meta.pk.clean(value, None)  # an integer in the column's range
        except ValidationError as error:
            # The changelist answers with its "invalid filter" redirect, as for Django's own filters.
            raise IncorrectLookupParameters(error) from error

    def queryset(self, request, queryset):
        user_id = self.user_id()
        return queryset if user_id is None else queryset.filter(user_id=user_id)


class LanguageFilter(KnownValuesFilter):
    """
    The language a conversation was held in, by name: the known languages that conversations
    use (a short list, not all that the server offers), "Detected automatically", "Other".
    """

    title = "language"
    parameter_name = field = "language"
    AUTOMATIC = "auto"  # in the URL: an empty value would mean "no filter"

    def known_values(self):
        return languages.CODES

    def lookups(self, request, model_admin):
        used = set(Conversation.objects.order_by().values_list("language", flat=True).distinct())
        value = self.value()
        shown = sorted((used | {value}) & set(languages.CODES), key=languages.label)
        choices = [(self.AUTOMATIC, "Detected automatically")] + [(code, languages.label(code)) for code in shown]
        if value and value not in (self.AUTOMATIC, self.OTHER) and value not in languages.CODES:
            choices.append((value, value))  # a link from elsewhere: show what is filtered
        return choices + [(self.OTHER, "Other")]

    def queryset(self, request, queryset):
        value = self.value()
        if value == self.AUTOMATIC:
            return queryset.filter(language=languages.AUTOMATIC)
        if value == self.OTHER:
            return queryset.exclude(language__in=[languages.AUTOMATIC, *languages.CODES])
        return super().queryset(request, queryset)

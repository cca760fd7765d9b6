"""
Token usage and its estimated cost, totalled per user and per day (the staff usage view).

Each table is one grouped query per (row, model): costs depend on the model, so rows are
grouped by model in SQL and the estimates summed here; and one grouped query per row of the
input transcription usage (priced at the transcription model's prices, whatever the model).
The query count does not depend on how many conversations there are.
"""

from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from conversations import budget, spend
from conversations.history import pricing, selectors
from conversations.models import Conversation, RealtimeCall, TranscriptionUsage

TOKEN_FIELDS = Conversation.USAGE_FIELDS + ("transcription_tokens",)


@dataclass
class UsageRow:
    key: object  # a username or a date
    user_id: int | None = None
    conversations: int = 0
    duration: timedelta = timedelta(0)
    tokens: dict = field(default_factory=lambda: dict.fromkeys(TOKEN_FIELDS, 0))
    cost: Decimal = Decimal(0)
    # Some conversations used a model that has no price: the cost is a lower bound.
    unpriced: int = 0

    @property
    def total_tokens(self) -> int:
        return self.tokens["input_tokens"] + self.tokens["output_tokens"]

    def add(self, values: dict, model: str):
        self.conversations += values["conversations"]
        self.duration += values["duration"] or timedelta(0)
        for name in TOKEN_FIELDS:
            self.tokens[name] += values[name] or 0
        cost = pricing.estimate_cost(values, model)
        if cost is None:
            self.unpriced += values["conversations"]
        else:
            self.cost += cost


def _grouped(conversations, *keys):
    # Duration per conversation: from the first to the last event (see Conversation.duration).
    duration = ExpressionWrapper(F("last_activity_at") - F("started_at"), output_field=DurationField())
    return (
        conversations.order_by()
        .values(*keys, "model")
        .annotate(
            conversations=Count("pk"),
            duration=Sum(duration),
            **{name: Sum(name) for name in TOKEN_FIELDS},
        )
    )


def _transcription_costs(conversations, key) -> dict:
    """{key value: the estimated cost of the input transcription of those conversations}."""
    rows = (
        TranscriptionUsage.objects.filter(conversation__in=conversations.order_by().values("pk"))
        .annotate(group=key)
        .order_by()
        .values("group")
        .annotate(**selectors.transcription_sums())
    )
    return {values["group"]: pricing.transcription_cost(values) for values in rows}


def by_user(conversations) -> list[UsageRow]:
    """Totals per user, the biggest spender first."""
    rows: dict[int, UsageRow] = {}
    for values in _grouped(conversations, "user_id", "user__username"):
        row = rows.setdefault(values["user_id"], UsageRow(values["user__username"], values["user_id"]))
        row.add(values, values["model"])
    for user_id, cost in _transcription_costs(conversations, F("conversation__user_id")).items():
        rows[user_id].cost += cost
    return sorted(rows.values(), key=lambda row: (-row.cost, -row.total_tokens, str(row.key)))


def by_day(conversations) -> list[UsageRow]:
    """Totals per day the conversations were created on (current time zone), newest first."""
    rows: dict[date, UsageRow] = {}
    for values in _grouped(conversations.annotate(day=TruncDate("created_at")), "day"):
        row = rows.setdefault(values["day"], UsageRow(values["day"]))
        row.add(values, values["model"])
    for day, cost in _transcription_costs(conversations, TruncDate("conversation__created_at")).items():
        rows[day].cost += cost
    return sorted(rows.values(), key=lambda row: row.key, reverse=True)


def total(rows: list[UsageRow]) -> UsageRow:
    """The sum of some rows (the footer of a table)."""
    result = UsageRow("Total")
    for row in rows:
        result.conversations += row.conversations
        result.duration += row.duration
        for name in TOKEN_FIELDS:
            result.tokens[name] += row.tokens[name]
        result.cost += row.cost
        result.unpriced += row.unpriced
    return result


# --- daily budgets (conversations/budget.py) ----------------------------------------------------------

NEAR_BUDGET = Decimal("0.8")  # a user at 80 % of their budget or more is "near" it


@dataclass
class BudgetRow:
    username: str
    user_id: int
    standing: object  # budget.Standing

    @property
    def share(self) -> Decimal | None:
        """Spent / budget (None without a budget)."""
        limit = self.standing.limit
        return None if limit is None else self.standing.spent / limit

    @property
    def percent(self) -> int | None:
        return None if self.share is None else int(self.share * 100)

    @property
    def state(self) -> str:
        """"over", "near" or "" (under, or no budget)."""
        if self.share is None:
            return ""
        return "over" if self.share >= 1 else "near" if self.share >= NEAR_BUDGET else ""


def budget_rows(*, now=None) -> list[BudgetRow]:
    """
    Everyone who spent anything over the last 24 hours against their budget: over it first, then
    near it, then by spend. A fixed number of queries however many users (budget.standings()).
    """
    now = now or timezone.now()
    # Spend is recorded as a conversation goes on: those active in the window hold all of it.
    since = now - spend.WINDOW
    active = Conversation.objects.filter(Q(last_activity_at__gt=since) | Q(created_at__gt=since))
    active = active.values("user_id")
    names = dict(get_user_model().objects.filter(pk__in=active).values_list("pk", "username"))
    standings = budget.standings(names, now=now)
    rows = [BudgetRow(names[user_id], user_id, s) for user_id, s in standings.items() if s.spent > 0]
    order = {"over": 0, "near": 1, "": 2}
    return sorted(rows, key=lambda row: (order[row.state], -row.standing.spent, row.username))


HUNG_UP_SHOWN = 50


def hung_up_calls(limit: int = HUNG_UP_SHOWN) -> list[RealtimeCall]:
    """The calls the server hung up (session cap, budget), latest first: one query on the
    partial index `call_hung_up`, bounded however many there are."""
    return list(
        RealtimeCall.objects.filter(hangup_requested_at__isnull=False)
        .select_related("conversation__user")
        .only(
            "call_id", "hangup_reason", "hangup_requested_at", "hung_up_at", "hangup_attempts", "hangup_error",
            "created_at", "conversation__uuid", "conversation__title", "conversation__user__username",
        )
        .order_by("-hangup_requested_at")[:limit]
    )

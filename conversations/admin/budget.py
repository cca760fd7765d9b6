"""Staff's daily budget for one user: an inline on the User admin (accounts/admin.py adds it)."""

from django.contrib import admin

from conversations import budget
from conversations.history import pricing
from conversations.models import BudgetOverride


class BudgetOverrideInline(admin.StackedInline):
    model = BudgetOverride
    fields = ("daily_usd", "updated_at")
    readonly_fields = ("updated_at",)
    # Deleting the row and emptying the amount mean the same: the site's budget.
    can_delete = True
    min_num, max_num = 0, 1
    verbose_name = verbose_name_plural = "daily voice budget (the site's unless set here)"

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name == "daily_usd":
            site = budget.site_limit()
            site_words = "no budget" if site is None else f"{pricing.format_usd(site)} per 24 hours"
            field.help_text = (
                "What this user may spend on voice sessions over any 24 hours, in US dollars, at list "
                f"prices. Empty: the site's budget (USER_DAILY_BUDGET_USD, now {site_words}). "
                "0: no budget for this user. Takes effect with their next session."
            )
        return field

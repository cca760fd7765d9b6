from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group

from conversations.admin.budget import BudgetOverrideInline
from voiceproject.admin_selection import SelectionIdsMixin

from .forms import PreferencesForm, ThrottledAdminAuthenticationForm
from .models import Preferences

# The admin's log-in page counts failures with the site's log-in page: same limits, same keys.
admin.site.login_form = ThrottledAdminAuthenticationForm


class PreferencesInline(admin.StackedInline):
    """A user's preferences beside the user, checked by the same form as the user's own page."""

    model = Preferences
    form = PreferencesForm
    fields = ("voice", "turn_detection", "language", "record_audio", "updated_at")
    readonly_fields = ("updated_at",)
    can_delete = False  # no row and the site's defaults mean the same: nothing to delete
    min_num, max_num = 0, 1
    verbose_name_plural = "preferences (the site's defaults until saved)"


def take_over(model, default):
    """
    The ModelAdmin class registered for `model` (django.contrib.auth registers User's and Group's
    first: it comes earlier in INSTALLED_APPS), unregistered so that a subclass can take its place.
    """
    if not admin.site.is_registered(model):
        return default
    registered = type(admin.site.get_model_admin(model))
    admin.site.unregister(model)
    return registered


User = get_user_model()
user_admin = take_over(User, UserAdmin)
group_admin = take_over(Group, GroupAdmin)


# SelectionIdsMixin: a bulk action (delete_selected) on a selection that is not ids is a 400, not
# a 500, as on the Conversation admin.
@admin.register(User)
class PreferencesUserAdmin(SelectionIdsMixin, user_admin):
    # The daily budget is the conversations app's (conversations/budget.py), set here beside the user.
    inlines = (*user_admin.inlines, PreferencesInline, BudgetOverrideInline)


@admin.register(Group)
class CheckedGroupAdmin(SelectionIdsMixin, group_admin):
    pass

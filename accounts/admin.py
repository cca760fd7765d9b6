from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin

from conversations.admin.budget import BudgetOverrideInline

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


User = get_user_model()
# Django's own UserAdmin, registered again with the inline (django.contrib.auth registers it
# first: it comes earlier in INSTALLED_APPS).
if admin.site.is_registered(User):
    user_admin = type(admin.site.get_model_admin(User))
    admin.site.unregister(User)
else:
    user_admin = UserAdmin


@admin.register(User)
class PreferencesUserAdmin(user_admin):
    # The daily budget is the conversations app's (conversations/budget.py), set here beside the user.
    inlines = (*user_admin.inlines, PreferencesInline, BudgetOverrideInline)

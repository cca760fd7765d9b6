"""
Admin bulk actions on a selection that is not ids answer 400, for every admin that mixes this in.

Django's changelist filters by the posted `_selected_action` values as they come: one that is no
id (say "abc" or "1'"), or out of the column's range, fails the query and the page answers 500.
Each value is checked here with the primary key's own form cleaning, so what counts as an id is
the model's, not a guess.
"""

from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import BadRequest, ValidationError


class SelectionIdsMixin:
    """For a ModelAdmin: a posted selection holding anything but this model's ids is a 400."""

    def response_action(self, request, queryset):
        for value in request.POST.getlist(ACTION_CHECKBOX_NAME):
            try:
                self.opts.pk.clean(value, None)
            except ValidationError as error:
                raise BadRequest(
                    f"The selection holds something that is not a {self.opts.verbose_name} id."
                ) from error
        return super().response_action(request, queryset)

"""Forms of the history pages and the staff usage view (GET forms: every field optional)."""

from datetime import timedelta

from django import forms
from django.utils import timezone


class DateRangeForm(forms.Form):
    start = forms.DateField(label="From", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(label="To", required=False, widget=forms.DateInput(attrs={"type": "date"}))

    @classmethod
    def last_days(cls, days: int) -> dict:
        """The form data of the `days` days that end today."""
        today = timezone.localdate()
        return {"start": (today - timedelta(days=days - 1)).isoformat(), "end": today.isoformat()}

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("start"), cleaned.get("end")
        if start and end and start > end:
            self.add_error("end", "The end date is before the start date.")
        return cleaned

    def range(self) -> dict:
        """The valid bounds as keyword arguments of `history.created_between`."""
        self.is_valid()  # cleans; a field with an error is left out of cleaned_data
        return {"start": self.cleaned_data.get("start"), "end": self.cleaned_data.get("end")}


class HistoryFilterForm(DateRangeForm):
    """The search and date filter above the history list."""

    q = forms.CharField(
        label="Search transcripts",
        required=False,
        max_length=200,
        strip=True,
        widget=forms.TextInput(attrs={"type": "search", "placeholder": "Words you or the assistant said"}),
    )
    field_order = ("q", "start", "end")

    def filters(self) -> dict:
        """The valid filters as keyword arguments of `history.history_list`."""
        bounds = self.range()  # cleans the form first
        return {"text": self.cleaned_data.get("q", ""), **bounds}

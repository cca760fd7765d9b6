from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import AuthenticationForm, UserCreationForm
from django.core.exceptions import ValidationError

from voiceproject import ratelimit


class SignUpForm(UserCreationForm):
    email = forms.EmailField(
        required=False,
        help_text="Only used if you need to recover your account.",
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username", "email")


class ThrottledAuthenticationForm(AuthenticationForm):
    """
    Django's log-in form, refusing to check passwords for an account or an address that has
    failed too often lately. Failures are counted per account and per client address, so
    neither guessing one account's password from many addresses nor many accounts' passwords
    from one address gets far.
    """

    error_messages = {
        **AuthenticationForm.error_messages,
        "throttled": "Too many failed log-in attempts. Please wait %(wait)s and try again.",
    }

    def _limits(self):
        username = (self.cleaned_data.get("username") or "").strip().lower()
        address = ratelimit.client_ip(self.request) if self.request else "unknown"
        return [
            (settings.LOGIN_FAILURE_LIMIT_PER_ACCOUNT, ("login-account", username)),
            (settings.LOGIN_FAILURE_LIMIT_PER_IP, ("login-ip", address)),
        ]

    def clean(self):
        limits = self._limits()
        for limit, key in limits:
            verdict = ratelimit.check(limit, *key)
            if not verdict.allowed:
                raise ValidationError(
                    self.error_messages["throttled"],
                    code="throttled",
                    params={"wait": ratelimit.format_wait(verdict.retry_after)},
                )
        try:
            cleaned = super().clean()
        except ValidationError:
            for limit, key in limits:
                ratelimit.hit(limit, *key)
            raise
        account_limit, account_key = limits[0]
        ratelimit.clear(account_limit, *account_key)
        return cleaned

    @property
    def throttled(self) -> bool:
        return any(e.code == "throttled" for e in self.errors.as_data().get("__all__", []))

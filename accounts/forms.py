from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import AuthenticationForm, UserCreationForm
from django.core.exceptions import ValidationError
from django.forms.utils import ErrorDict

from accounts import languages
from accounts.models import Preferences
from conversations.realtime import upstream
from voiceproject import ratelimit


def _throttled_error(message: str, verdict: ratelimit.Verdict) -> ValidationError:
    return ValidationError(message, code="throttled", params={"wait": ratelimit.format_wait(verdict.retry_after)})


class _ThrottledForm:
    @property
    def throttled(self) -> bool:
        return any(e.code == "throttled" for e in self.errors.as_data().get("__all__", []))


class LoginThrottleMixin(_ThrottledForm):
    """
    Refuses to check passwords for an account or an address that has failed too often lately.
    Failures are counted per account and per client address, so neither guessing one account's
    password from many addresses nor many accounts' passwords from one address gets far. The
    site's log-in page and the admin's share the counters (same keys): an address or account
    over its limit on one is over it on the other.
    """

    throttled_message = "Too many failed log-in attempts. Please wait %(wait)s and try again."

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
                raise _throttled_error(self.throttled_message, verdict)
        try:
            cleaned = super().clean()
        except ValidationError:
            # A wrong password counts; the right one for an account that may not log in here
            # (inactive, or not staff on the admin) is no guess and does not.
            if self.user_cache is None:
                for limit, key in limits:
                    ratelimit.hit(limit, *key)
            raise
        # Only a password that was checked and right clears the account's failures: a post
        # without a password (never checked) must not wipe the count between guesses.
        if self.user_cache is not None:
            account_limit, account_key = limits[0]
            ratelimit.clear(account_limit, *account_key)
        return cleaned


class ThrottledAuthenticationForm(LoginThrottleMixin, AuthenticationForm):
    """Django's log-in form with the log-in throttle (the site's /accounts/login/)."""


class ThrottledAdminAuthenticationForm(LoginThrottleMixin, AdminAuthenticationForm):
    """The admin's log-in form with the same throttle and counters (admin.site.login_form)."""


class SignUpForm(_ThrottledForm, UserCreationForm):
    """
    Sign-up, limited to SIGNUP_RATE_LIMIT_PER_IP new accounts per client address (IPv6: per /64).
    Only accounts actually created count against it, so a person retrying a refused password loses
    nothing. Every post, created or not, also counts against SIGNUP_ATTEMPT_LIMIT_PER_IP, a more
    generous limit that stops a script posting refused sign-ups without end.
    """

    throttled_message = (
        "Too many accounts have been created from your network lately. Please wait %(wait)s and try again."
    )
    attempts_message = (
        "Too many sign-up attempts from your network lately. Please wait %(wait)s and try again."
    )

    email = forms.EmailField(
        required=False,
        help_text="Only used if you need to recover your account.",
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username", "email")

    def __init__(self, *args, request=None, **kwargs):
        self.request = request
        super().__init__(*args, **kwargs)

    def _limit(self) -> tuple[str, tuple[str, str]]:
        address = ratelimit.client_ip(self.request) if self.request else "unknown"
        return settings.SIGNUP_RATE_LIMIT_PER_IP, ("signup-ip", address)

    def full_clean(self):
        # Counted here, before any field is checked, so that a refused post costs neither the
        # username lookup nor the password validators: the form holds only the throttled error.
        if self.is_bound:
            address = ratelimit.client_ip(self.request) if self.request else "unknown"
            verdict = ratelimit.hit(settings.SIGNUP_ATTEMPT_LIMIT_PER_IP, "signup-attempt-ip", address)
            if not verdict.allowed:
                self._errors, self.cleaned_data = ErrorDict(), {}
                self.add_error(None, _throttled_error(self.attempts_message, verdict))
                return
        super().full_clean()

    def clean(self):
        limit, key = self._limit()
        verdict = ratelimit.check(limit, *key)
        if not verdict.allowed:
            raise _throttled_error(self.throttled_message, verdict)
        return super().clean()

    def take_slot(self) -> bool:
        """
        Count this sign-up against the address's limit, just before the account is saved.
        False, with the throttled error on the form, when a concurrent sign-up took the last
        slot since `clean` checked (the hit is atomic, so the limit stays exact).
        """
        limit, key = self._limit()
        verdict = ratelimit.hit(limit, *key)
        if not verdict.allowed:
            self.add_error(None, _throttled_error(self.throttled_message, verdict))
        return verdict.allowed


# The preferences page's words for the modes (conversations.realtime.upstream.TURN_DETECTION_MODES).
TURN_DETECTION_LABELS = {
    upstream.SERVER_VAD: "Hands-free: the assistant answers after a pause",
    upstream.SEMANTIC_VAD: "Hands-free: the assistant answers when you have finished",
    upstream.MANUAL: "Push-to-talk: hold a button while you speak",
}


class PreferencesForm(forms.ModelForm):
    """
    A user's voice, way of taking turns, language and "Record audio", on /accounts/preferences/
    and in the admin beside the user. Only what the server offers is accepted: an unknown value
    is a form error.
    """

    voice = forms.ChoiceField(help_text="The assistant's voice. The voice page can still change it for one session.")
    turn_detection = forms.ChoiceField(
        label="How you take turns",
        widget=forms.RadioSelect(attrs={"class": "choice-list"}),
        error_messages={"invalid_choice": "Choose one of the ways of taking turns listed."},
    )
    language = forms.ChoiceField(
        required=False,
        help_text="The language you speak: your words are transcribed in it and the assistant answers in it. "
        "“Detect automatically” lets the transcription guess, and the assistant answers as it sees fit.",
        error_messages={
            "invalid_choice": "Unknown language “%(value)s”: choose one of the languages listed, "
            "or “Detect automatically”."
        },
    )

    record_audio = forms.BooleanField(
        required=False,
        label="Record audio",
        help_text="Keep the audio of your sessions (your voice and the assistant's) beside the transcript, "
        "to play back later. You can delete a recording without deleting its transcript.",
    )

    class Meta:
        model = Preferences
        fields = ("voice", "turn_detection", "language", "record_audio")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["voice"].choices = [(voice, voice.capitalize()) for voice in upstream.VOICES]
        self.fields["voice"].error_messages["invalid_choice"] = (
            "Unknown voice “%(value)s”: choose one of the voices listed."
        )
        self.fields["turn_detection"].choices = [
            (mode, TURN_DETECTION_LABELS.get(mode, upstream.TURN_DETECTION_LABELS[mode]))
            for mode in upstream.TURN_DETECTION_MODES
        ]
        self.fields["language"].choices = languages.choices()

from django.contrib import admin, messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.mixins import LoginRequiredMixin
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.views.generic import CreateView, UpdateView

from . import consent, preferences
from .forms import PreferencesForm, SignUpForm, ThrottledAuthenticationForm


class ThrottledStatusMixin:
    """A form the throttle refused answers 429 (Too Many Requests), the page and its message as usual."""

    def form_invalid(self, form):
        response = super().form_invalid(form)
        if form.throttled:
            response.status_code = 429
        return response


class SignUpView(ThrottledStatusMixin, CreateView):
    form_class = SignUpForm
    template_name = "registration/signup.html"
    success_url = reverse_lazy("chat")

    def dispatch(self, request, *args, **kwargs):
        if request.user.is_authenticated:
            return redirect(self.success_url)
        return super().dispatch(request, *args, **kwargs)

    def get_form_kwargs(self):
        return {**super().get_form_kwargs(), "request": self.request}

    def form_valid(self, form):
        if not form.take_slot():
            return self.form_invalid(form)
        response = super().form_valid(form)
        login(self.request, self.object, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(self.request, f"Welcome, {self.object.username}! Your account is ready.")
        return response


class LoginView(ThrottledStatusMixin, auth_views.LoginView):
    form_class = ThrottledAuthenticationForm
    redirect_authenticated_user = True


def admin_login(request):
    """
    The admin's log-in page (routed ahead of admin.site.urls): admin.site.login, answering 429 when
    the log-in throttle refused, as the site's log-in page does. AdminSite.login builds its LoginView
    inside the method, so there is no form_invalid to hook; its answer is a TemplateResponse not yet
    rendered, whose form (admin.site.login_form, accounts/admin.py) says whether it was refused.
    """
    response = admin.site.login(request)
    form = (getattr(response, "context_data", None) or {}).get("form")
    if getattr(form, "throttled", False):
        response.status_code = 429
    return response


class LogoutView(auth_views.LogoutView):
    """Log-out is a POST (a link must not log anyone out); a GET gets a page with the button."""

    http_method_names = ["get", "post", "options"]

    def get(self, request, *args, **kwargs):
        return render(request, "registration/logout_confirm.html")

    def post(self, request, *args, **kwargs):
        response = super().post(request, *args, **kwargs)
        messages.info(request, "You have been logged out.")
        return response


class PasswordChangeView(auth_views.PasswordChangeView):
    def form_valid(self, form):
        response = super().form_valid(form)
        messages.success(self.request, "Your password has been changed.")
        return response


class PreferencesView(LoginRequiredMixin, UpdateView):
    """/accounts/preferences/: the user's own preferences, saved (the row created) on the first save."""

    form_class = PreferencesForm
    template_name = "registration/preferences.html"
    success_url = reverse_lazy("preferences")

    def get_object(self, queryset=None):
        return preferences.for_user(self.request.user)

    def get_form(self, form_class=None):
        form = super().get_form(form_class)
        # Only in opt-in mode is there a choice; otherwise the saved choice is left as it was.
        if not consent.is_optional():
            del form.fields["record_audio"]
        return form

    def get_context_data(self, **kwargs):
        return {**super().get_context_data(**kwargs), "recordings_mode": consent.mode()}

    def form_valid(self, form):
        response = super().form_valid(form)
        messages.success(self.request, "Your preferences have been saved. New voice sessions use them.")
        return response

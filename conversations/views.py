from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.urls import reverse

from . import realtime


def home(request):
    """The chat for signed-in users; the log-in page for everyone else."""
    return redirect("chat" if request.user.is_authenticated else "login")


@login_required
def chat(request):
    """The voice page. What its script needs goes into a json_script block (CSP-safe)."""
    openai_configured = realtime.is_configured()
    voice_config = {
        "apiUrl": reverse("api_realtime_sessions"),
        "openaiConfigured": openai_configured,
        # OpenAI ends a session after 60 minutes; the page offers to continue before that.
        "sessionLimitSeconds": 60 * 60,
        "warnBeforeSeconds": 5 * 60,
    }
    return render(
        request,
        "conversations/chat.html",
        {
            "voice_config": voice_config,
            "voices": realtime.VOICES,
            "default_voice": settings.REALTIME_VOICE,
            "openai_configured": openai_configured,
        },
    )


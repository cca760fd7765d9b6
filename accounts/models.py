from django.conf import settings
from django.db import models

from accounts import languages

# The modes, as in conversations.realtime.upstream (kept literal here: a model must not import
# the upstream client, and a migration must not change with it).
SERVER_VAD = "server_vad"


def default_voice() -> str:
    return settings.REALTIME_VOICE


class Preferences(models.Model):
    """
    One user's preferences for new voice sessions. A row exists once the user (or staff) saved
    them; until then `preferences.for_user()` hands out the site's defaults, unsaved, so a
    default changed later still reaches users who never chose.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="preferences"
    )
    voice = models.CharField(max_length=32, default=default_voice)
    turn_detection = models.CharField(max_length=16, default=SERVER_VAD)
    # ISO-639-1 (accounts/languages.py); "" = the transcription model detects the language.
    language = models.CharField(max_length=8, blank=True, default=languages.AUTOMATIC)
    # The "Record audio" switch: used only when RECORDINGS=opt-in (accounts/consent.py).
    record_audio = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = verbose_name_plural = "preferences"

    def __str__(self):
        return f"Preferences of {self.user}"

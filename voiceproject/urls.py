from django.contrib import admin
from django.urls import include, path

from conversations import api as conversation_api, views as conversation_views

from .health import healthz

urlpatterns = [
    path("", conversation_views.home, name="home"),
    path("accounts/", include("accounts.urls")),
    path("chat/", conversation_views.chat, name="chat"),
    path("conversations/", include("conversations.urls")),
    path("api/realtime/sessions", conversation_api.realtime_sessions, name="api_realtime_sessions"),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
]

# JSON under /api/, the HTML pages elsewhere.
handler404 = "voiceproject.api.page_not_found"
handler500 = "voiceproject.api.server_error"

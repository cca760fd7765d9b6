from django.contrib import admin
from django.urls import include, path

from accounts import api as accounts_api
from accounts import views as accounts_views
from conversations.realtime import views as realtime_views
from conversations.recordings import views as recording_views

from .health import healthz

urlpatterns = [
    path("", realtime_views.home, name="home"),
    path("accounts/", include("accounts.urls")),
    path("chat/", realtime_views.chat, name="chat"),
    path("conversations/", include("conversations.urls")),
    path("api/realtime/sessions", realtime_views.realtime_sessions, name="api_realtime_sessions"),
    path("api/realtime/calls", realtime_views.realtime_calls, name="api_realtime_calls"),
    path("api/realtime/budget", realtime_views.realtime_budget, name="api_realtime_budget"),
    path("api/preferences/record-audio", accounts_api.record_audio, name="api_record_audio"),
    # Segments and indexes are parsed by the views: a malformed one is a 400, not an unknown path.
    path(
        "api/conversations/<str:conversation_id>/recordings/<str:segment>/chunks/<str:index>",
        recording_views.upload_chunk,
        name="api_recording_chunk",
    ),
    path(
        "api/conversations/<str:conversation_id>/recordings/<str:segment>/",
        recording_views.recording_status,
        name="api_recording",
    ),
    # Ahead of the admin's own "login/" (same address and name): a throttled log-in is a 429 there too.
    path("admin/login/", accounts_views.admin_login),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
]

# JSON under /api/, the HTML pages elsewhere.
handler400 = "voiceproject.api.bad_request"
handler404 = "voiceproject.api.page_not_found"
handler500 = "voiceproject.api.server_error"

from django.urls import path

from conversations.history import views as history_views
from conversations.recordings import views as recording_views

app_name = "conversations"

urlpatterns = [
    path("", history_views.conversation_list, name="list"),
    path("download/", history_views.download_all, name="download_all"),
    path("<uuid:conversation_id>/", history_views.conversation_detail, name="detail"),
    path("<uuid:conversation_id>/delete/", history_views.conversation_delete, name="delete"),
    path("<uuid:conversation_id>/download/", history_views.conversation_download, name="download"),
    path("<uuid:conversation_id>/recording/", recording_views.play, name="recording"),
    path("<uuid:conversation_id>/recording/<int:segment>/", recording_views.play, name="recording_segment"),
    path("<uuid:conversation_id>/recording/delete/", recording_views.delete, name="recording_delete"),
]

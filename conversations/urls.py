from django.urls import path

from conversations.history import views as history_views

app_name = "conversations"

urlpatterns = [
    path("", history_views.conversation_list, name="list"),
    path("download/", history_views.download_all, name="download_all"),
    path("<uuid:conversation_id>/", history_views.conversation_detail, name="detail"),
    path("<uuid:conversation_id>/delete/", history_views.conversation_delete, name="delete"),
    path("<uuid:conversation_id>/download/", history_views.conversation_download, name="download"),
]

from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    name = "conversations"
    verbose_name = "Conversations"

    def ready(self):
        from conversations import checks  # noqa: F401  (registers the system checks
        from conversations.transcript import sockets

        # Log-out and password change close the user's open sockets (in every process).
        sockets.connect_signals()

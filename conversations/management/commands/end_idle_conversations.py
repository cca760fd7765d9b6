"""manage.py end_idle_conversations [--timeout SECONDS]

Marks ended every active conversation that received no event for CONVERSATION_IDLE_TIMEOUT
seconds (or --timeout). Sockets also do this for their user's conversations when they connect;
run this from cron (every few minutes) to cover users who never come back.
"""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from conversations import actions


class Command(BaseCommand):
    help = "Mark ended the active conversations that have been silent for longer than the idle timeout."

    def add_arguments(self, parser):
        parser.add_argument(
            "--timeout",
            type=int,
            default=None,
            metavar="SECONDS",
            help=f"Silence that ends a conversation (default CONVERSATION_IDLE_TIMEOUT, now {settings.CONVERSATION_IDLE_TIMEOUT}).",
        )

    def handle(self, *args, timeout, verbosity, **options):
        if timeout is not None and timeout <= 0:
            raise CommandError("--timeout must be a positive number of seconds.")
        ended = actions.end_idle_conversations(timeout=timeout)
        if verbosity >= 1:
            self.stderr.write(f"Ended {len(ended)} idle conversations.")

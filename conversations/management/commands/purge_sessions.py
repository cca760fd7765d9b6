import datetime

from django.core.management.base import BaseCommand
from django.utils import timezone

from conversations import actions
from conversations.export import reader
from conversations.management import arguments
from conversations.management.output import plural

# How each deleted model is named in the report.
NOUNS = {
    "conversations.Conversation": "conversation",
    "conversations.Utterance": "utterance",
    "conversations.Event": "journal event",
    "conversations.ResponseUsage": "response usage record",
}


def describe(counts) -> str:
    return ", ".join(plural(counts[label], noun) for label, noun in NOUNS.items())


class Command(BaseCommand):
    help = (
        "Delete conversations whose last activity (their creation, if nothing was ever received) "
        "is more than DAYS days old, with their utterances, journal and usage, in batches. "
        "--dry-run only counts."
    )

    def add_arguments(self, parser):
        parser.add_argument("--older-than", required=True, metavar="DAYS", help="Age in days (1 or more).")
        parser.add_argument(
            "--user", action="append", metavar="NAME", help="Only this user's conversations (repeatable)."
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be deleted; delete nothing."
        )
        parser.add_argument(
            "--batch-size",
            default=actions.DEFAULT_BATCH_SIZE,
            metavar="N",
            help=f"Conversations deleted per transaction (default {actions.DEFAULT_BATCH_SIZE}).",
        )

    def handle(self, *args, **options):
        days = arguments.positive_int(options["older_than"], "--older-than")
        batch_size = arguments.positive_int(options["batch_size"], "--batch-size")
        cutoff = timezone.now() - datetime.timedelta(days=days)
        queryset = reader.select_conversations(users=arguments.users(options["user"])).filter(
            actions.inactive_before(cutoff)
        )
        scope = f"inactive since before {cutoff:%Y-%m-%d %H:%M %Z}"
        if options["dry_run"]:
            counts = actions.count_conversations(queryset)
            self.stdout.write(f"Dry run: would delete {describe(counts)} ({scope}).")
        else:
            counts = actions.delete_conversations(queryset, batch_size=batch_size)
            self.stdout.write(f"Deleted {describe(counts)} ({scope}).")

from django.core.management.base import BaseCommand

from conversations import actions
from conversations.management import arguments
from conversations.management.output import plural

# How each deleted model is named in the report.
NOUNS = {
    "conversations.Conversation": "conversation",
    "conversations.Utterance": "utterance",
    "conversations.Event": "journal event",
    "conversations.ResponseUsage": "response usage record",
    "conversations.Recording": "recording",
}


def describe(counts) -> str:
    return ", ".join(plural(counts[label], noun) for label, noun in NOUNS.items())


class Command(BaseCommand):
    help = (
        "Delete conversations whose last activity (their creation, if nothing was ever received) "
        "is more than DAYS days old, with their utterances, journal, usage and recordings (rows, then "
        "their files once each batch committed), in batches. "
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
        purge = actions.purge_inactive(
            older_than_days=days,
            users=arguments.users(options["user"]),
            dry_run=options["dry_run"],
            batch_size=batch_size,
        )
        scope = f"inactive since before {purge.cutoff:%Y-%m-%d %H:%M %Z}"
        if purge.dry_run:
            self.stdout.write(f"Dry run: would delete {describe(purge.counts)} ({scope}).")
        else:
            self.stdout.write(f"Deleted {describe(purge.counts)} ({scope}).")

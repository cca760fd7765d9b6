"""manage.py rebuild_transcripts [--conversation UUID]…

Re-derives utterances, usage and totals from the event journal with the current reducer (after
a parser fix, say). Safe to run again and again: an up-to-date conversation is not written to.
Conversations with a transcript but no journal are left alone and listed.
"""

from collections import Counter

from django.core.management.base import BaseCommand, CommandError

from conversations.history import selectors
from conversations.management import arguments
from conversations.models import Conversation
from conversations.transcript import journal

PROGRESS_EVERY = 100


class Command(BaseCommand):
    help = "Re-derive transcripts, usage and totals of conversations from their event journal."

    def add_arguments(self, parser):
        parser.add_argument(
            "--conversation",
            action="append",
            default=[],
            metavar="UUID",
            help="Only this conversation (repeatable). Default: every conversation.",
        )

    def handle(self, *args, conversation, verbosity, **options):
        conversations, total = self._select(conversation)
        counts = Counter()
        for done, item in enumerate(conversations, start=1):
            result = journal.rebuild(item)
            counts[result.status] += 1
            if result.status == "skipped":
                self.stderr.write(
                    f"Skipped {item.uuid}: it has {result.utterances} utterances but no journal to rebuild "
                    "them from (left as it is)."
                )
            elif verbosity >= 2:
                self.stderr.write(
                    f"{item.uuid}: {result.status} ({result.events} events, {result.utterances} utterances, "
                    f"{result.usages} responses, {result.transcriptions} transcriptions)"
                )
            if verbosity >= 1 and done % PROGRESS_EVERY == 0 and done < total:
                self.stderr.write(f"{done}/{total} conversations…")
        if verbosity >= 1:
            self.stderr.write(
                f"{sum(counts.values())} conversations: {counts['rebuilt']} rebuilt, "
                f"{counts['unchanged']} unchanged, {counts['skipped']} skipped."
            )

    def _select(self, values):
        wanted = arguments.uuids(values, "--conversation")
        if not wanted:
            queryset = Conversation.objects.order_by("pk").only("pk", "uuid")
            return queryset.iterator(chunk_size=500), queryset.count()
        found, missing = selectors.find_by_ids(wanted)
        if missing:
            raise CommandError(f"No conversation with id {', '.join(map(str, missing))}.")
        return found, len(found)

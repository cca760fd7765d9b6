from django.core.management.base import BaseCommand, CommandError

from conversations.export import restore
from conversations.management.output import plural


class Command(BaseCommand):
    help = (
        "Restore conversations from an export_sessions jsonl file (plain or gzip) for the users "
        "of the same usernames, who must exist. The whole file is checked first: if any line is "
        "broken (truncated, not JSON, invalid fields, unknown user) the command names the line "
        "and imports nothing. It then writes in batches of "
        f"{restore.BATCH_SIZE} conversations, one transaction each. Conversations already stored "
        "(same id) are skipped, so importing twice creates nothing new and an interrupted import "
        "is completed by running it again. The journal is restored when the export has it "
        "(--include-events)."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", metavar="FILE", help="A .jsonl or .jsonl.gz file from export_sessions.")
        parser.add_argument("--dry-run", action="store_true", help="Check the file and count; write nothing.")

    def handle(self, *args, **options):
        path, dry_run = options["file"], options["dry_run"]
        try:
            report = restore.import_file(path, dry_run=dry_run)
        except restore.ImportFileError as error:
            raise CommandError(f"{path}: {str(error).rstrip('.')}. Nothing was imported.") from None
        except restore.ImportWriteError as error:
            raise CommandError(f"{path}: {error}.") from None
        children = ", ".join(
            [
                plural(report.utterances, "utterance"),
                plural(report.usages, "response usage record"),
                plural(report.events, "journal event"),
            ]
        )
        verb = "Would import" if dry_run else "Imported"
        self.stdout.write(
            f"{verb} {plural(report.conversations, 'conversation')} ({children}); "
            f"skipped {report.skipped} already stored."
        )

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from conversations.management import arguments
from conversations.management.output import Stderr, plural
from conversations.recordings import orphans, store

DEFAULT_MIN_AGE = 3600  # seconds: an upload writes its file a moment before its row


def non_negative_int(value, option: str) -> int:
    if value in (0, "0"):
        return 0
    return arguments.positive_int(value, option)


class Command(BaseCommand):
    help = (
        "Find recording files that no row names (orphans: a file delete that failed, an upload "
        "cut short) and remove them, and report recording chunks whose file is missing. "
        "--dry-run only lists. Progress goes to stderr, the findings to stdout."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="List what would be removed; remove nothing.")
        parser.add_argument(
            "--min-age",
            default=DEFAULT_MIN_AGE,
            metavar="SECONDS",
            help=f"Leave orphans younger than this alone: an upload may be under way (default {DEFAULT_MIN_AGE}).",
        )

    def handle(self, *args, **options):
        stderr = Stderr(self.stderr)
        min_age = non_negative_int(options["min_age"], "--min-age")
        dry_run, verbosity = options["dry_run"], options["verbosity"]
        removed = failed = size = recent = 0
        missing = []
        if verbosity:
            stderr.line("Walking the recordings storage…")
        try:
            for finding in orphans.find(min_age=timedelta(seconds=min_age)):
                if finding.kind == "missing":
                    missing.append(finding.name)
                    self.stdout.write(f"missing file: {finding.name}")
                elif finding.kind == "recent":
                    recent += 1
                elif dry_run:
                    removed += 1
                    size += finding.size or 0
                    self.stdout.write(f"would remove: {finding.name}")
                elif store.remove_files([finding.name]):
                    failed += 1
                    self.stdout.write(f"could not remove: {finding.name}")
                else:
                    removed += 1
                    size += finding.size or 0
                    self.stdout.write(f"removed: {finding.name}")
                    if verbosity and removed % 100 == 0:
                        stderr.line(f"{plural(removed, 'orphaned file')} removed so far")
        except OSError as error:
            raise CommandError(f"Cannot read the recordings storage: {error.strerror or error}.") from None
        verb = "Would remove" if dry_run else "Removed"
        summary = f"{verb} {plural(removed, 'orphaned file')} ({size} bytes)"
        if recent:
            summary += f"; left {plural(recent, 'recent file')} without a row (younger than {min_age} s)"
        if failed:
            summary += f"; could not remove {failed}"
        summary += f"; {plural(len(missing), 'chunk')} with a missing file."
        self.stdout.write(summary)

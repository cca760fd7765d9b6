from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from conversations.export import audio, formats, reader
from conversations.history import selectors
from conversations.management import arguments
from conversations.management.output import Progress, Sink, Stderr, plural, stdout_is_closed
from conversations.models import Conversation


class Command(BaseCommand):
    help = (
        "Export conversations with their transcripts and usage. Data goes to stdout or -o FILE "
        "(FILE.gz is gzip-compressed); progress and the final count go to stderr. Reads in "
        "chunks, so memory stays flat whatever the size. jsonl (the default) is the backup "
        "format that import_sessions reads: one conversation per line, utterances in order."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--format",
            default="jsonl",
            metavar="|".join(formats.FORMATS),
            help="jsonl (default): one conversation per line; json: one array; csv: one row per "
            "utterance; markdown: readable transcripts.",
        )
        parser.add_argument(
            "--user", action="append", metavar="NAME", help="Only this user's conversations (repeatable)."
        )
        parser.add_argument(
            "--since",
            metavar="ISO",
            help="Only conversations created at or after this date or time (a date means its "
            "start; no offset means the server's TIME_ZONE).",
        )
        parser.add_argument(
            "--until", metavar="ISO", help="Only conversations created before this date or time."
        )
        parser.add_argument(
            "--conversation", action="append", metavar="UUID", help="Only this conversation (repeatable)."
        )
        parser.add_argument(
            "--status",
            action="append",
            metavar="|".join(Conversation.Status.values),
            help="Only conversations in this status (repeatable).",
        )
        parser.add_argument(
            "--include-events", action="store_true", help="Add the raw event journal (jsonl and json)."
        )
        parser.add_argument(
            "--include-recordings",
            action="store_true",
            help="Also write each recording's audio to FILE.recordings/<uuid>-<segment>.<ext> (needs -o FILE).",
        )
        parser.add_argument("-o", "--output", metavar="FILE", help="Write to FILE instead of stdout.")
        parser.add_argument("--force", action="store_true", help="Overwrite FILE if it exists.")
        parser.add_argument(
            "--chunk-size",
            metavar="N",
            help=f"Conversations read per round of queries (default {reader.DEFAULT_CHUNK_SIZE}, "
            f"{reader.DEFAULT_CHUNK_SIZE_WITH_EVENTS} with --include-events).",
        )

    def handle(self, *args, **options):
        stderr = Stderr(self.stderr)
        (format,) = arguments.choices(options["format"], formats.FORMATS, "--format")
        include_events = options["include_events"]
        if include_events and not formats.FORMATS[format].carries_events:
            carriers = [f.name for f in formats.FORMATS.values() if f.carries_events]
            raise CommandError(f"--include-events needs --format {' or '.join(carriers)}.")
        include_recordings = options["include_recordings"]
        if include_recordings and options["output"] in (None, "-"):
            raise CommandError(
                "--include-recordings needs -o FILE: the audio files are written beside it, in FILE.recordings/."
            )
        since, until = arguments.time_range(options["since"], options["until"])
        conversation_ids = arguments.uuids(options["conversation"], "--conversation")
        queryset = reader.select_conversations(
            users=arguments.users(options["user"]),
            since=since,
            until=until,
            conversation_ids=conversation_ids,
            statuses=arguments.choices(options["status"], Conversation.Status.values, "--status"),
        )
        chunk_size = options["chunk_size"]
        if chunk_size is not None:
            chunk_size = arguments.positive_int(chunk_size, "--chunk-size")
        verbosity = options["verbosity"]
        if conversation_ids and verbosity:
            for missing in selectors.find_by_ids(conversation_ids)[1]:
                stderr.line(f"warning: there is no conversation {missing}")

        total = queryset.count()
        sink = Sink(
            self.stdout, options["output"], force=options["force"]
        )  # opened last: no query can fail after
        audio_folder = None
        if include_recordings:
            try:
                audio_folder = audio.AudioFolder(Path(options["output"]), force=options["force"])
            except CommandError:
                sink.abort()
                raise
        progress = Progress(stderr, total, verbosity=verbosity)
        utterances = 0

        def counted(records):
            nonlocal utterances
            for record in records:
                if audio_folder is not None:
                    audio_folder.write(record)
                yield record
                utterances += len(record["utterances"])
                progress.advance()

        # A backup and a staff export: the review fields are in.
        records = reader.iter_records(
            queryset, chunk_size=chunk_size, include_events=include_events, include_review=True
        )
        try:
            self._write(format, counted(records), sink)
            if audio_folder is not None:
                audio_folder.close()
        except BaseException:
            if audio_folder is not None:
                audio_folder.abort()
            raise
        finally:
            progress.close()
        if audio_folder is not None and audio_folder.incomplete:
            # Said whatever the verbosity: a backup with short audio must not pass unnoticed.
            stderr.line(
                f"Warning: {plural(len(audio_folder.incomplete), 'recording')} written short, a chunk's file "
                f"missing (see clean_recordings): {', '.join(audio_folder.incomplete)}"
            )
        if verbosity:
            audio_line = ""
            if audio_folder is not None:
                audio_line = f"; {plural(audio_folder.files, 'recording')} ({audio_folder.bytes} bytes) to {audio_folder.path}"
            stderr.line(
                f"{plural(progress.done, 'conversation')}, {plural(utterances, 'utterance')} "
                f"written to {sink.name}{audio_line}"
            )

    @staticmethod
    def _write(format, records, sink):
        try:
            for text in formats.stream(format, records):
                sink.write(text)
            sink.close()
        except BrokenPipeError:
            stdout_is_closed()
            raise CommandError("The output was closed before the export finished.") from None
        except OSError as error:  # a full disk, a lost mount
            sink.abort()
            raise CommandError(f"Cannot write {sink.name}: {error.strerror or error}.") from None
        except KeyboardInterrupt:
            sink.abort()
            kept = f"; nothing was written to {sink.name}" if sink.path else ""
            raise CommandError(f"Interrupted{kept}.") from None
        except BaseException:
            sink.abort()
            raise

"""
The export formats: generators of text chunks over an iterable of records (`records.py`).

Each format is one `Format` record in `FORMATS` (name, label, content type, extension, writer),
in the order the command's help and the download menus list them. `manage.py export_sessions`, the user's download
view and the admin's export actions all call `stream(name, records)`: a command writes the
chunks to a file, a view hands them to a `StreamingHttpResponse`; either way one chunk of
conversations is in memory at a time:

    records = reader.iter_records(Conversation.objects.filter(user=request.user))
    response = StreamingHttpResponse(
        formats.stream("csv", records), content_type=formats.FORMATS["csv"].content_type
    )

jsonl and json write the records as they are (`import_sessions` reads jsonl back); csv and
markdown are views of the same records for spreadsheets and for people.
"""

import csv
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from accounts import languages
from conversations.export.records import UTTERANCE
from conversations.models import Utterance

Writer = Callable[[Iterable[dict]], Iterator[str]]


def _dumps(record: dict, **kwargs) -> str:
    # Records are trees of fresh dicts and lists: the circular-reference check is wasted work.
    return json.dumps(record, ensure_ascii=False, check_circular=False, **kwargs)


# --- Formats: generators of text chunks -----------------------------------------------------
def iter_jsonl(records: Iterable[dict]) -> Iterator[str]:
    """JSON Lines: one record per line. Nothing for no conversations."""
    for record in records:
        yield _dumps(record, separators=(",", ":")) + "\n"


def iter_json(records: Iterable[dict]) -> Iterator[str]:
    """One JSON array of records (`[]` for none)."""
    separator = "[\n"
    for record in records:
        yield separator + _dumps(record, indent=2)
        separator = ",\n"
    yield "[]\n" if separator == "[\n" else "\n]\n"


# The CSV columns: the conversation's, then the utterance's (prefixed where names clash).
CSV_CONVERSATION_COLUMNS = ("conversation_id", "user") + tuple(
    f"conversation_{name}"
    for name in ("title", "model", "voice", "language", "status", "created_at", "ended_at")
)
CSV_COLUMNS = CSV_CONVERSATION_COLUMNS + UTTERANCE.names
# A spreadsheet runs a cell that starts with one of these as a formula; users type text.
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value):
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_PREFIXES):
        return "'" + value
    return value


def iter_csv(records: Iterable[dict]) -> Iterator[str]:
    """
    One row per utterance, the conversation's columns repeated on each. A conversation with no
    utterances still gets one row (utterance columns empty) so that it is not lost from view.
    Usage, review and events are not in this layout.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush():
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(CSV_COLUMNS)
    yield flush()
    for record in records:
        head = [record["id"], record["user"]] + [
            record[name.removeprefix("conversation_")] for name in CSV_CONVERSATION_COLUMNS[2:]
        ]
        rows = record["utterances"] or [{}]
        for utterance in rows:
            writer.writerow(_csv_cell(v) for v in head + [utterance.get(f) for f in UTTERANCE.names])
        yield flush()


_SPEAKERS = {Utterance.Role.USER: "User", Utterance.Role.ASSISTANT: "Assistant"}


def _readable(iso: str | None) -> str:
    """2025-03-01T12:00:00.123456Z → 2025-03-01 12:00:00 UTC."""
    return f"{iso[:19].replace('T', ' ')} UTC" if iso else ""


# Markdown: what a user said (or an attacker had transcribed, or an OpenAI error message) must
# read as text, never as structure: no fake "**Assistant:**" turn, heading, rule, quote, list,
# link or HTML. Each line is escaped, and the lines of one utterance stay in its paragraph.
_MD_ANYWHERE = re.compile(r"[\\`*_{}\[\]#|~]")  # emphasis, code, links, headings, tables, strikethrough
_MD_ENTITY = re.compile(r"&(?=#?[0-9A-Za-z]+;)")  # "&lt;" must stay those four characters
_MD_ORDERED = re.compile(r"(\d+)([.)])")  # "1. " or "1) " starts a list


def _md_line(line: str) -> str:
    line = _MD_ANYWHERE.sub(r"\\\g<0>", line.strip())
    line = _MD_ENTITY.sub("&amp;", line).replace("<", "&lt;")  # no HTML, no autolinks
    if line[:1] in (">", "+", "-", "=", ":"):  # a quote, a list, a heading underline, a definition
        return "\\" + line
    return _MD_ORDERED.sub(r"\1\\\2", line, count=1) if _MD_ORDERED.match(line) else line


def md_text(text: str) -> str:
    """Text as Markdown that renders it literally, within one paragraph: its lines joined with
    hard breaks (a blank line would start a new block)."""
    return "  \n".join(_md_line(line) for line in text.splitlines() if line.strip())


def md_inline(text: str) -> str:
    """Text as Markdown on one line (a heading, a list item)."""
    return _md_line(" ".join(line.strip() for line in text.splitlines() if line.strip()))


def _language(code: str) -> str:
    return f"{languages.label(code)} ({code})" if code else "detected automatically"


def _recording_length(milliseconds: int) -> str:
    minutes, seconds = divmod(round(milliseconds / 1000), 60)
    return f"{minutes}:{seconds:02}"


def record_markdown(record: dict) -> str:
    """A transcript for people to read."""
    usage = record["usage"]
    created, ended = _readable(record["created_at"]), _readable(record["ended_at"])
    lines = [
        f"# {md_inline(record['title']) or 'Conversation ' + record['id']}",
        "",
        f"- Conversation: `{record['id']}`",
        f"- User: {md_inline(record['user'])}",
        f"- Created: {created}" + (f", ended: {ended}" if ended else ""),
        f"- Status: {record['status']}",
        f"- Model: {md_inline(record['model'])}, voice: {md_inline(record['voice'])}",
        f"- Language: {md_inline(_language(record.get('language', '')))}",
        (
            f"- Tokens: {usage['input_tokens']} in, {usage['output_tokens']} out, "
            f"{usage['transcription_tokens']} for transcription"
        ),
        *(
            f"- Recording{' ' + str(r['segment']) if len(record.get('recordings', ())) > 1 else ''}: "
            f"{_recording_length(r['duration_ms'])}, {r['bytes']} bytes ({r['mime_type']})"
            for r in record.get("recordings", ())
        ),
        "",
    ]
    for utterance in record["utterances"]:
        speaker = _SPEAKERS.get(utterance["role"], utterance["role"])
        if utterance["kind"] == Utterance.Kind.TEXT:
            speaker += " (typed)"
        text = md_text(utterance["text"])
        if utterance["status"] == Utterance.Status.FAILED:
            text = f"_(transcription failed: {md_inline(utterance['error']) or 'no reason given'})_"
        elif utterance["status"] == Utterance.Status.PENDING and not text:
            text = "_(not transcribed)_"
        elif utterance["status"] == Utterance.Status.INTERRUPTED:
            text = f"{text} _(interrupted)_".lstrip()
        elif utterance["status"] == Utterance.Status.DELETED:
            text = f"{text} _(removed from the conversation)_".lstrip()
        lines += [f"**{speaker}:** {text}", ""]
    if not record["utterances"]:
        lines += ["_Nothing was said._", ""]
    return "\n".join(lines)


def iter_markdown(records: Iterable[dict]) -> Iterator[str]:
    """Human-readable transcripts separated by rules."""
    separator = ""
    for record in records:
        yield separator + record_markdown(record)
        separator = "\n---\n\n"


# --- The formats ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Format:
    name: str  # ?format= and --format
    label: str  # for people: menus, admin actions
    content_type: str
    extension: str
    writer: Writer
    carries_events: bool = False  # can hold the raw journal (export_sessions --include-events)


FORMATS = {
    f.name: f
    for f in (
        Format("jsonl", "JSON Lines", "application/x-ndjson; charset=utf-8", "jsonl", iter_jsonl, carries_events=True),
        Format("json", "JSON", "application/json; charset=utf-8", "json", iter_json, carries_events=True),
        Format("csv", "CSV", "text/csv; charset=utf-8", "csv", iter_csv),
        Format("markdown", "Markdown", "text/markdown; charset=utf-8", "md", iter_markdown),
    )
}


def stream(format: str, records: Iterable[dict]) -> Iterator[str]:
    """Text chunks of `records` in `format` (a key of FORMATS), header and footer included."""
    try:
        writer = FORMATS[format].writer
    except KeyError:
        raise ValueError(f"Unknown format {format!r}; choose from {', '.join(FORMATS)}.") from None
    return writer(records)

"""
Downloads of stored conversations as files, for users (history pages) and staff (admin).

The file's content comes from `serializers.stream`, the same serializers the export command
uses; this module only turns a format name and a queryset into a streaming attachment.
"""

from django.http import StreamingHttpResponse
from django.shortcuts import render
from django.utils.http import content_disposition_header

from . import queries, serializers

# What the download menus offer, in this order (the keys of serializers.FORMATS).
CHOICES = (
    ("markdown", "Markdown"),
    ("json", "JSON"),
    ("jsonl", "JSON Lines"),
    ("csv", "CSV"),
)


def menu() -> list[dict]:
    return [
        {"name": name, "label": label, "extension": serializers.FORMATS[name].extension}
        for name, label in CHOICES
    ]


def attachment(conversations, format_name: str, basename: str, **options) -> StreamingHttpResponse:
    """
    `conversations` streamed as `basename.<extension>` in `format_name` (a known format);
    `options` go to `queries.iter_records` (`include_review=True` for staff exports).
    """
    fmt = serializers.FORMATS[format_name]
    chunks = serializers.stream(format_name, queries.iter_records(conversations, **options))
    response = StreamingHttpResponse((chunk.encode() for chunk in chunks), content_type=fmt.content_type)
    response["Content-Disposition"] = content_disposition_header(True, f"{basename}.{fmt.extension}")
    return response


def response(request, conversations, basename: str):
    """The download asked for by `?format=`, or a 400 page that says which formats exist."""
    format_name = request.GET.get("format", "")
    if format_name not in serializers.FORMATS:
        return render(
            request,
            "conversations/download_error.html",
            {"format": format_name, "formats": menu()},
            status=400,
        )
    return attachment(conversations, format_name, basename)

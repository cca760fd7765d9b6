"""
Downloads of stored conversations as files, for users (history pages) and staff (admin).

The file's content comes from `formats.stream`, the same serializers the export command
uses; this module only turns a format name and a queryset into a streaming attachment.
"""

from django.http import StreamingHttpResponse
from django.shortcuts import render
from django.utils.http import content_disposition_header

from conversations.export import formats, reader


def menu() -> list[dict]:
    """What the download menus offer: every format, in the order of formats.FORMATS."""
    return [{"name": f.name, "label": f.label, "extension": f.extension} for f in formats.FORMATS.values()]


def attachment(conversations, format_name: str, basename: str, **options) -> StreamingHttpResponse:
    """
    `conversations` streamed as `basename.<extension>` in `format_name` (a known format);
    `options` go to `reader.iter_records` (`include_review=True` for staff exports).
    """
    fmt = formats.FORMATS[format_name]
    chunks = formats.stream(format_name, reader.iter_records(conversations, **options))
    response = StreamingHttpResponse((chunk.encode() for chunk in chunks), content_type=fmt.content_type)
    response["Content-Disposition"] = content_disposition_header(True, f"{basename}.{fmt.extension}")
    return response


def response(request, conversations, basename: str):
    """The download asked for by `?format=`, or a 400 page that says which formats exist."""
    format_name = request.GET.get("format", "")
    if format_name not in formats.FORMATS:
        return render(
            request,
            "conversations/download_error.html",
            {"format": format_name, "formats": menu()},
            status=400,
        )
    return attachment(conversations, format_name, basename)

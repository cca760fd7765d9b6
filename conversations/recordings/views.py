"""
The recordings' HTTP side: the upload API the voice page calls, and the pages' playback,
download and delete. The rules are in store.py; these views parse, look the conversation up
through `access` (someone else's is a 404, like an unknown one) and answer.

PUT  /api/conversations/<uuid>/recordings/<segment>/chunks/<index>   one chunk (raw body)
GET  /api/conversations/<uuid>/recordings/<segment>/                 what the server holds
GET  /conversations/<uuid>/recording/[<segment>/]                    the audio (HTTP Range)
POST /conversations/<uuid>/recording/delete/                         delete the audio
"""

import re

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.handlers.asgi import ASGIRequest
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect
from django.utils.http import http_date, quote_etag
from django.views.decorators.http import require_http_methods, require_POST

from conversations import access
from conversations.models import Recording
from conversations.recordings import store
from voiceproject.api import api_view, error_response, json_response

DURATION_HEADER = "X-Recording-Duration-Ms"


def _whole_number(text: str | None, what: str) -> int:
    # Digits only: int() would also take " 7", "+7" and "٧".
    if text is None or not re.fullmatch(r"[0-9]{1,12}", text):
        raise store.InvalidChunk(f"{what} must be a whole number.")
    return int(text)


def _read_chunk(request) -> bytes:
    """The body, read up to one byte past the bound (never more into memory)."""
    limit = settings.RECORDING_MAX_CHUNK_BYTES
    declared = request.META.get("CONTENT_LENGTH")
    if declared and declared.isdigit() and int(declared) > limit:
        raise store.ChunkTooLarge(f"A chunk may hold at most {limit} bytes.")
    # request.read(), not request.body: the body of a chunk is not a form, and DATA_UPLOAD_MAX_
    # MEMORY_SIZE is not its bound; RECORDING_MAX_CHUNK_BYTES is.
    data = request.read(limit + 1)
    if len(data) > limit:
        raise store.ChunkTooLarge(f"A chunk may hold at most {limit} bytes.")
    return data


def refused(error: store.Refused):
    """The API's error answer; `out_of_order` also says which chunk is expected."""
    if not error.extra:
        return error_response(error.status, error.code, str(error))
    return json_response({"error": {"code": error.code, "message": str(error)}, **error.extra}, status=error.status)


def _upload(user, conversation_id, segment, index, request) -> store.Appended:
    if not store.recordings_enabled():
        raise store.RecordingsDisabled("Recording audio is turned off on this site.")
    segment = _whole_number(segment, "The segment")
    index = _whole_number(index, "The chunk index")
    duration_ms = _whole_number(request.headers.get(DURATION_HEADER), DURATION_HEADER)
    store.check_address(segment, index, duration_ms)
    data = _read_chunk(request)
    if not data:
        raise store.InvalidChunk("The chunk is empty.")
    store.mime_type(request.META.get("CONTENT_TYPE"))
    try:
        conversation = access.get_conversation(user, conversation_id)
    except access.NoAccess:
        raise store.NotFound("No such conversation.") from None
    return store.append_chunk(conversation, segment, index, data, request.META.get("CONTENT_TYPE"), duration_ms)


@api_view("PUT")
async def upload_chunk(request, conversation_id, segment, index):
    try:
        appended = await sync_to_async(_upload)(request.user, conversation_id, segment, index, request)
    except store.Refused as error:
        return refused(error)
    return json_response(appended.body, status=201 if appended.created else 200)


def _status(user, conversation_id, segment) -> dict:
    segment = _whole_number(segment, "The segment")
    try:
        conversation = access.get_conversation(user, conversation_id)
    except access.NoAccess:
        raise store.NotFound("No such conversation.") from None
    recording = Recording.objects.filter(conversation=conversation, segment=segment).first()
    if recording is None:
        raise store.NotFound("This conversation has no recording of that session.")
    return {"recording": store.summary(recording, segment)}


@api_view("GET")
async def recording_status(request, conversation_id, segment):
    try:
        body = await sync_to_async(_status)(request.user, conversation_id, segment)
    except store.Refused as error:
        return refused(error)
    return json_response(body)


# --- Playback ------------------------------------------------------------------------------------
RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def byte_range(header: str | None, size: int) -> tuple[int, int] | None | bool:
    """
    The (first, last) byte a Range header asks for; None to send everything (no header, or one
    we do not serve: several ranges, another unit, bad syntax — which RFC 9110 lets a server
    ignore); False when it cannot be satisfied.
    """
    if not header:
        return None
    match = RANGE.fullmatch(header.strip())
    if not match or not any(match.groups()):
        return None
    first, last = match.groups()
    if not first:  # a suffix: the last N bytes
        length = int(last)
        return (max(size - length, 0), size - 1) if length and size else False
    first = int(first)
    if last and int(last) < first:
        return None  # not a valid range: ignored
    if first >= size:
        return False
    return first, min(int(last), size - 1) if last else size - 1


def _recording_or_404(request, conversation_id, segment) -> Recording:
    try:
        conversation = access.get_conversation(request.user, conversation_id, reviewer=True)
    except access.NoAccess:
        raise Http404("No such conversation.") from None
    recordings = Recording.objects.filter(conversation=conversation).select_related("conversation")
    recording = (
        recordings.filter(segment=segment).first() if segment is not None else recordings.order_by("segment").first()
    )
    if recording is None:
        raise Http404("This conversation has no recording.")
    return recording


def download_name(recording: Recording) -> str:
    return f"conversation-{recording.conversation.uuid}-{recording.segment}.{store.extension(recording.mime_type)}"


@login_required
@require_http_methods(["GET", "HEAD"])
def play(request, conversation_id, segment=None):
    """The audio of one recording: the owner's and staff's, with HTTP Range so that seeking works."""
    recording = _recording_or_404(request, conversation_id, segment)
    chunks = store.chunk_files(recording)
    size = sum(length for _, length in chunks)
    etag = quote_etag(f"{recording.pk}-{len(chunks)}-{size}")
    wanted = byte_range(request.headers.get("Range"), size)
    if_range = request.headers.get("If-Range")
    if wanted and if_range and if_range != etag:
        wanted = None  # the client holds another version: the whole recording, not a piece
    headers = {
        "Accept-Ranges": "bytes",
        # Per user: no shared cache may keep it; the browser revalidates a recording still growing.
        "Cache-Control": "private, no-cache",
        "ETag": etag,
        "Last-Modified": http_date(recording.updated_at.timestamp()),
    }
    if request.GET.get("download") == "1":
        headers["Content-Disposition"] = f'attachment; filename="{download_name(recording)}"'
    if wanted is False:
        headers["Content-Range"] = f"bytes */{size}"
        return HttpResponse(status=416, headers=headers)
    first, last = wanted if wanted else (0, size - 1)
    headers["Content-Length"] = str(last - first + 1)
    status = 206 if wanted else 200
    if wanted:
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    if request.method == "HEAD" or size == 0:
        return HttpResponse(status=status, content_type=recording.mime_type, headers=headers)
    return StreamingHttpResponse(
        _streamed(request, store.read_range(chunks, first, last)),
        status=status,
        content_type=recording.mime_type,
        headers=headers,
    )


def _streamed(request, blocks):
    """Under ASGI (daphne), the blocks as an async iterator: Django would otherwise warn and hop
    to its one shared thread for each block; the file reads need no database, so any thread does."""
    if not isinstance(request, ASGIRequest):
        return blocks

    async def read():
        while (block := await sync_to_async(next, thread_sensitive=False)(blocks, None)) is not None:
            yield block

    return read()


@login_required
@require_POST
def delete(request, conversation_id):
    """Delete the conversation's audio; its transcript stays. The owner's alone."""
    try:
        conversation = access.get_conversation(request.user, conversation_id)
    except access.NoAccess:
        raise Http404("No such conversation.") from None
    if store.delete_recordings(conversation):
        messages.success(request, "Deleted the recording; the transcript is kept.")
    else:
        messages.info(request, "This conversation has no recording.")
    return redirect(conversation.get_absolute_url())

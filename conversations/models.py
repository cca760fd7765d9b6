"""
The stored side of a voice conversation.

The event journal (`Event`) is the source of truth: every accepted socket frame, raw. The
transcript (`Utterance`) and the usage (`ResponseUsage`, `TranscriptionUsage`, and the totals on
`Conversation`) are derived from it by the reducer in `transcript/reducer.py`, so they can be
rebuilt at any time.
"""

import uuid
from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.urls import reverse
from django.utils import timezone


class TokenUsage(models.Model):
    """Token counts as OpenAI reports them in `response.done.response.usage`."""

    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    input_text_tokens = models.PositiveIntegerField(default=0)
    input_audio_tokens = models.PositiveIntegerField(default=0)
    # Cached tokens are a subset of the input tokens, billed at a lower rate.
    cached_tokens = models.PositiveIntegerField(default=0)
    output_text_tokens = models.PositiveIntegerField(default=0)
    output_audio_tokens = models.PositiveIntegerField(default=0)

    USAGE_FIELDS = (
        "input_tokens",
        "output_tokens",
        "input_text_tokens",
        "input_audio_tokens",
        "cached_tokens",
        "output_text_tokens",
        "output_audio_tokens",
    )

    class Meta:
        abstract = True

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class Conversation(TokenUsage):
    """One conversation of one user; it may span several OpenAI sessions (segments)."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        ENDED = "ended", "Ended"
        FAILED = "failed", "Failed"  # no OpenAI session could be started for it

    class TurnDetection(models.TextChoices):
        SERVER_VAD = "server_vad", "Hands-free (server VAD)"
        SEMANTIC_VAD = "semantic_vad", "Hands-free (semantic VAD)"
        MANUAL = "manual", "Push-to-talk"

    uuid = models.UUIDField("public id", default=uuid.uuid4, unique=True, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    title = models.CharField(max_length=200, blank=True)
    model = models.CharField(max_length=100)
    voice = models.CharField(max_length=32)
    turn_detection = models.CharField(
        max_length=16, choices=TurnDetection.choices, default=TurnDetection.SERVER_VAD
    )
    # ISO-639-1 code of the language it was held in (accounts/languages.py, of the latest
    # session); "" = detected automatically.
    language = models.CharField(max_length=8, blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    segments = models.PositiveIntegerField(
        default=0, help_text="How many OpenAI sessions (ephemeral keys) this conversation used."
    )
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True, help_text="First event received.")
    last_activity_at = models.DateTimeField(null=True, blank=True, help_text="Last event received.")
    ended_at = models.DateTimeField(null=True, blank=True)
    # Input transcription is billed apart from the responses: the sum of its TranscriptionUsage rows.
    transcription_tokens = models.PositiveIntegerField(default=0)
    conflicts = models.PositiveIntegerField(
        default=0,
        help_text="Events that contradicted a line (another role, or another final text): kept in the "
        "journal; applied only when the server's witness contradicted what the browser reported.",
    )
    # Bytes of the frames journaled for it (as received), counted in the transaction that stores
    # them: bounded by TRANSCRIPT_MAX_BYTES_PER_CONVERSATION.
    stored_bytes = models.PositiveBigIntegerField(default=0)
    # The highest seq of the server's stream handed out to a witness (conversations/witness/seqs.py):
    # witnesses reserve their seqs above it, so two processes never number two events alike.
    server_seqs_reserved = models.PositiveBigIntegerField(default=0)

    # Staff review.
    reviewed = models.BooleanField(default=False)
    reviewed_at = models.DateTimeField(null=True, blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    flagged = models.BooleanField(default=False)
    review_note = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["user", "-created_at"], name="conv_user_created"),
            # A user's conversations active lately: what they spent (conversations/spend.py).
            models.Index(fields=["user", "last_activity_at"], name="conv_user_activity"),
            models.Index(fields=["status", "last_activity_at"], name="conv_status_activity"),
            models.Index(fields=["created_at"], name="conv_created"),
            # The admin's filters and review queues, newest first (history_indexes migration).
            models.Index(fields=["model", "-created_at"], name="conv_model_created"),
            models.Index(fields=["-created_at"], condition=models.Q(flagged=True), name="conv_flagged_created"),
            models.Index(
                fields=["-created_at"], condition=models.Q(reviewed=False), name="conv_unreviewed_created"
            ),
        ]

    def __str__(self):
        return self.title or f"Conversation {self.uuid}"

    def get_absolute_url(self):
        return reverse("conversations:detail", args=[self.uuid])

    @property
    def duration(self):
        """From the first to the last event received (None before any)."""
        if self.started_at and self.last_activity_at:
            return self.last_activity_at - self.started_at
        return None


class Source(models.TextChoices):
    """Who saw an event: the browser (forwarded on the transcript socket, unproven) or the server
    itself (the witness's sideband connection to the call: the truth)."""

    BROWSER = "browser", "Browser"
    SERVER = "server", "Server (witness)"


class Event(models.Model):
    """One journaled OpenAI server event exactly as it was received: forwarded by the browser on
    the transcript socket, or seen by the server's own witness of the call (`source`)."""

    Source = Source

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="events")
    # Each source numbers its own stream: the page its frames, the witness what it saw.
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.BROWSER)
    seq = models.PositiveBigIntegerField()
    type = models.CharField(max_length=100)
    payload = models.JSONField()
    received_at = models.DateTimeField(default=timezone.now)
    # Null for an event stored as received. Otherwise what was changed to store it (the database
    # cannot hold every string JSON can): {"replaced": <characters replaced by U+FFFD>,
    # "truncated": [{"field": "transcript", "chars": <original length>}, …]}.
    repairs = models.JSONField(null=True, blank=True)

    class Meta:
        # The journal's order is the order of storage (the id: writers of one conversation are
        # serialised), which interleaves the two streams as the reducer saw them.
        ordering = ["conversation", "id"]
        constraints = [
            models.UniqueConstraint(fields=["conversation", "source", "seq"], name="event_unique_source_seq"),
            models.CheckConstraint(condition=models.Q(seq__gte=1), name="event_seq_positive"),
        ]

    def __str__(self):
        return f"#{self.seq} {self.type}" if self.source == Source.BROWSER else f"{self.source} #{self.seq} {self.type}"


class Utterance(models.Model):
    """One item of the OpenAI conversation: what the user or the assistant said or typed."""

    class Role(models.TextChoices):
        USER = "user", "User"
        ASSISTANT = "assistant", "Assistant"

    class Kind(models.TextChoices):
        AUDIO = "audio", "Spoken"
        TEXT = "text", "Typed"

    class Status(models.TextChoices):
        PENDING = "pending", "Transcribing"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Transcription failed"
        INTERRUPTED = "interrupted", "Interrupted"
        # Removed from the model's context (`conversation.item.deleted`): kept, as it was said.
        DELETED = "deleted", "Deleted"

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="utterances"
    )
    item_id = models.CharField(max_length=100)
    role = models.CharField(max_length=16, choices=Role.choices)
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.AUDIO)
    text = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    error = models.TextField(blank=True, help_text="Why the transcription or the reply failed.")
    response_id = models.CharField(max_length=100, blank=True)
    # The line's place in the transcript: OpenAI's conversation order (right after the item
    # `previous_item_id` names), not when its text arrived (conversations/transcript/order.py).
    position = models.PositiveIntegerField()
    # The item OpenAI placed this one after, as the events said (blank: the first, or not said).
    previous_item_id = models.CharField(max_length=100, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)
    # The server's witness of the call saw this line's final text (what is stored is its version).
    verified = models.BooleanField(default=False)

    # The one list of a transcript line's fields, in record order: what the reducer derives
    # (UtteranceState), the journal writes, exports carry and live updates send.
    FIELDS = ("position", "item_id", "role", "kind", "status", "text", "error", "response_id",
              "created_at", "completed_at", "verified", "previous_item_id")  # fmt: skip
    # Set when the item first appears (the journal updates the rest). A position changes only
    # when a line is placed again, after the item it follows arrives late (order.py).
    SET_ONCE_FIELDS = ("position", "item_id", "created_at")
    DATETIME_FIELDS = ("created_at", "completed_at")

    class Meta:
        ordering = ["conversation", "position"]
        constraints = [
            models.UniqueConstraint(fields=["conversation", "item_id"], name="utterance_unique_item"),
            models.UniqueConstraint(
                fields=["conversation", "position"], name="utterance_unique_position"
            ),
        ]
        # "Has failed transcriptions" / "interrupted" filters: small partial indexes, as those
        # statuses are rare. Transcript text search has a trigram index on PostgreSQL only
        # (migration 0002), created outside the model state.
        indexes = [
            models.Index(fields=["conversation"], condition=models.Q(status="failed"), name="utt_failed"),
            models.Index(
                fields=["conversation"], condition=models.Q(status="interrupted"), name="utt_interrupted"
            ),
            # The lines that follow an item, found when that item arrives (order.py).
            models.Index(fields=["conversation", "previous_item_id"], name="utt_follows"),
        ]

    def __str__(self):
        return f"{self.get_role_display()}: {self.text[:60]}"


class ResponseUsage(TokenUsage):
    """The usage of one model response, recorded once per response_id."""

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="usages")
    response_id = models.CharField(max_length=100)
    status = models.CharField(max_length=32, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Whose response.done this is: the witness's replaces the browser's, never the other way round.
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.BROWSER)

    class Meta:
        ordering = ["conversation", "created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["conversation", "response_id"], name="usage_unique_response"
            ),
        ]

    def __str__(self):
        return f"{self.response_id}: {self.total_tokens} tokens"


class TranscriptionUsage(models.Model):
    """The usage of one user item's input transcription, recorded once per item_id.

    As OpenAI reports it on `conversation.item.input_audio_transcription.completed.usage`: tokens
    (`{"type": "tokens", …}`: the gpt-4o-*-transcribe models) or seconds of audio
    (`{"type": "duration", "seconds": …}`: whisper-1). Billed apart from the responses, at the
    transcription model's prices (`history/pricing.py`).
    """

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="transcriptions")
    item_id = models.CharField(max_length=100)
    input_tokens = models.PositiveIntegerField(default=0)
    input_text_tokens = models.PositiveIntegerField(default=0)
    input_audio_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    # Duration-billed models report seconds of audio, not tokens.
    seconds = models.DecimalField(max_digits=12, decimal_places=3, default=0)
    created_at = models.DateTimeField(default=timezone.now)
    # Whose completion this is: the witness's replaces the browser's, never the other way round.
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.BROWSER)

    COUNT_FIELDS = ("input_tokens", "input_text_tokens", "input_audio_tokens", "output_tokens")
    USAGE_FIELDS = (*COUNT_FIELDS, "seconds")

    class Meta:
        ordering = ["conversation", "created_at"]
        constraints = [
            models.UniqueConstraint(fields=["conversation", "item_id"], name="transcription_unique_item"),
        ]

    def __str__(self):
        return f"{self.item_id}: {self.total_tokens} tokens"

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class DailyStorage(models.Model):
    """Bytes of frames journaled for one user on one (UTC) day: TRANSCRIPT_MAX_BYTES_PER_USER_PER_DAY.

    One row per user and day with frames, locked and updated by the journal's append transaction,
    so that concurrent sockets (other conversations, other processes) cannot both pass the bound.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    bytes = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "day"], name="daily_storage_unique_day")]

    def __str__(self):
        return f"{self.user_id} {self.day}: {self.bytes} bytes"


class RealtimeCall(models.Model):
    """One OpenAI Realtime call (WebRTC) of a conversation, named by OpenAI's call id (`rtc_…`).

    A call id belongs to one conversation for good: the first to report it gets it. `server`: the
    server made the call itself (REALTIME_CONNECT=server), so the id is certain; `browser`: the
    page reported the id it read from OpenAI's answer, which proves nothing about who made it.
    """

    class Source(models.TextChoices):
        BROWSER = "browser", "Reported by the browser"
        SERVER = "server", "Made by the server"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="calls")
    call_id = models.CharField(max_length=104, unique=True)
    source = models.CharField(max_length=8, choices=Source.choices)
    created_at = models.DateTimeField(default=timezone.now)

    # The server's witness (conversations/witness/): its own sideband connection to the call.
    class WitnessState(models.TextChoices):
        NONE = "none", "Not witnessed (yet)"
        ATTACHED = "attached", "Attached"
        LOST = "lost", "Lost (reconnecting, or the call ended while lost)"
        FAILED = "failed", "Failed (the attach was refused)"

    # Which server process holds the witness, until when (a lease its heartbeat renews; another
    # process may take the call over once it has expired).
    witness_holder = models.CharField(max_length=100, blank=True, default="")
    witness_lease_until = models.DateTimeField(null=True, blank=True)
    witness_state = models.CharField(max_length=8, choices=WitnessState.choices, default=WitnessState.NONE)
    witness_attempts = models.PositiveSmallIntegerField(
        default=0, help_text="Refused attaches in a row (the witness fails after a few)."
    )
    session_resets = models.PositiveIntegerField(
        default=0, help_text="Times the witness set the session's instructions or tools back to the server's."
    )
    ended_at = models.DateTimeField(null=True, blank=True, help_text="When the witness saw the call end.")

    # The server's hang-up (conversations/witness/hangup.py): why, when it was claimed (by exactly
    # one process: a conditional UPDATE on hangup_requested_at), when OpenAI confirmed it, how many
    # tries it took and the last error when every try failed.
    class HangupReason(models.TextChoices):
        NONE = "", "—"
        SESSION_CAP = "session_cap", "Session length cap"
        BUDGET = "budget", "Daily budget spent"

    hangup_reason = models.CharField(max_length=16, choices=HangupReason.choices, blank=True, default="")
    hangup_requested_at = models.DateTimeField(null=True, blank=True)
    hung_up_at = models.DateTimeField(null=True, blank=True, help_text="When OpenAI confirmed the hang-up.")
    hangup_attempts = models.PositiveSmallIntegerField(default=0)
    hangup_error = models.CharField(max_length=500, blank=True, default="")

    class Meta:
        ordering = ["conversation", "created_at"]
        indexes = [
            models.Index(fields=["ended_at", "witness_lease_until"], name="call_witness_scan"),
            # The session-cap sweep: live calls not yet hung up, oldest first. Partial (live calls
            # only: small); its first two columns are the ones the sweep tests for NULL, so SQLite
            # sees two equalities and a range and reads it alone (with an index on created_at only
            # it took call_witness_scan and sorted); PostgreSQL scans it too (bench/hangup_sweep.py).
            models.Index(
                fields=["ended_at", "hangup_requested_at", "created_at"],
                condition=models.Q(ended_at__isnull=True, hangup_requested_at__isnull=True),
                name="call_cap_sweep",
            ),
            # The staff usage page: the latest calls the server hung up.
            models.Index(
                fields=["hangup_requested_at"],
                condition=models.Q(hangup_requested_at__isnull=False),
                name="call_hung_up",
            ),
        ]

    def __str__(self):
        return f"{self.call_id} ({self.source})"


class BudgetOverride(models.Model):
    """Staff's daily budget for one user, in place of the site's USER_DAILY_BUDGET_USD.

    No row, or an empty amount: the site's budget. 0: no budget at all (as USER_DAILY_BUDGET_USD=0).
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="budget_override"
    )
    daily_usd = models.DecimalField(
        "daily voice budget (USD)",
        max_digits=9,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0))],
        help_text="What this user may spend on voice sessions over any 24 hours, in US dollars. "
        "Empty: the site's budget (USER_DAILY_BUDGET_USD). 0: no budget for this user.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "daily budget"

    def __str__(self):
        return f"Daily budget of {self.user}"


class BudgetHold(models.Model):
    """What a starting session holds of its user's daily budget (BUDGET_SESSION_RESERVE_USD) until
    its call or conversation ends, or it lapses (`expires_at`) if nothing says so.

    Written by the same transaction that checked the budget (conversations/budget.py), so that
    sessions started at the same moment cannot together pass a budget only one of them fits.
    `conversation_uuid` names the session's conversation, decided before the check: a new
    conversation is created with it only once OpenAI has answered (realtime/issuing.py), so there
    is nothing to link the hold to afterwards.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    conversation_uuid = models.UUIDField(db_index=True)
    usd = models.DecimalField(max_digits=9, decimal_places=4)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["user", "expires_at"], name="hold_user_expires")]

    def __str__(self):
        return f"{self.usd} USD held for {self.user_id} until {self.expires_at}"


class Recording(models.Model):
    """
    The audio of one session (segment) of a conversation, both sides mixed, recorded by the
    browser and uploaded in chunks (conversations/recordings/). The recording is its chunks'
    files concatenated in index order: MediaRecorder's chunks join into one valid stream.
    """

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="recordings")
    # The conversation's session this is the audio of (1 = the first; Conversation.segments).
    segment = models.PositiveIntegerField()
    # The recorder's mimeType, as sent with chunk 0 (e.g. "audio/webm;codecs=opus").
    mime_type = models.CharField(max_length=100)
    chunks = models.PositiveIntegerField(default=0)
    bytes = models.PositiveBigIntegerField(default=0)
    # The audio covered so far, as the recorder counted it (the last chunk's cumulative duration).
    duration_ms = models.PositiveBigIntegerField(default=0)
    # Server clock: when chunk 0 arrived minus the audio it covered, so that a transcript line's
    # place in the recording is line.created_at - started_at.
    started_at = models.DateTimeField()
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["conversation", "segment"]
        constraints = [
            models.UniqueConstraint(fields=["conversation", "segment"], name="recording_unique_segment"),
            models.CheckConstraint(condition=models.Q(segment__gte=1), name="recording_segment_positive"),
        ]

    def __str__(self):
        return f"recording {self.segment} of {self.conversation_id} ({self.bytes} bytes)"


class RecordingChunk(models.Model):
    """One uploaded chunk of a recording: its file in STORAGES["recordings"] (`name`) and its digest."""

    recording = models.ForeignKey(Recording, on_delete=models.CASCADE, related_name="chunk_files")
    index = models.PositiveIntegerField()
    # The storage name of its file: unique per upload attempt, so that two uploads of one index
    # never write the same file (a storage may overwrite) and a refused one removes only its own.
    name = models.CharField(max_length=255, unique=True)
    bytes = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["recording", "index"]
        constraints = [
            models.UniqueConstraint(fields=["recording", "index"], name="recording_chunk_unique_index"),
        ]

    def __str__(self):
        return f"chunk {self.index} ({self.bytes} bytes)"

// Forwarded events wait here, in localStorage (synchronous: stored before sent), until the
// server acks them. Where storage throws or is missing, in memory only.

// The events the transcript is derived from (docs/socket.md), GA and beta names; never deltas.
export const FORWARDED_TYPES = new Set([
  "conversation.item.added", "conversation.item.done", "conversation.item.created", "conversation.item.deleted",
  "conversation.item.truncated", "conversation.item.input_audio_transcription.completed",
  "conversation.item.input_audio_transcription.failed", "response.output_audio_transcript.done",
  "response.audio_transcript.done", "response.output_text.done", "response.text.done", "response.done", "error",
  "input_audio_buffer.committed",
]);

export const shouldForward = (event) => FORWARDED_TYPES.has(event?.type);

const PREFIX = "voice.outbox.";
export const storageKey = (conversationId) => PREFIX + conversationId;

function load(storage, key) {
  try {
    const record = JSON.parse(storage.getItem(key));
    if (record?.v === 1 && Array.isArray(record.frames) && Number.isInteger(record.nextSeq)) return record;
  } catch {}
  return null;
}

export class Outbox {
  // owner: this tab's id, to tell its leftovers from another tab's live outbox.
  constructor(storage, conversationId, { socketUrl = "", owner = "", now = Date.now } = {}) {
    Object.assign(this, { storage, key: storageKey(conversationId), owner, now, persistError: null });
    this.record = load(storage, this.key) || { v: 1, nextSeq: 1, frames: [], socketUrl, ended: false };
    if (socketUrl) this.record.socketUrl = socketUrl;
  }

  get size() { return this.record.frames.length; }
  get ended() { return this.record.ended; }
  get finished() { return this.ended && !this.size; }

  pending() {
    return this.record.frames.slice();
  }

  push(event) {
    const frame = { type: "event", seq: this.record.nextSeq++, event };
    this.record.frames.push(frame);
    this.persist();
    return frame;
  }

  // Stored, or refused for good; returns whether it was pending.
  ack(seq) {
    const { frames } = this.record;
    this.record.frames = frames.filter((frame) => frame.seq !== seq);
    if (this.size === frames.length) return false;
    this.persist();
    return true;
  }

  // The server holds all up to lastSeq: drop those, never reuse their numbers.
  ready(lastSeq) {
    const last = Number.isInteger(lastSeq) && lastSeq > 0 ? lastSeq : 0;
    this.record.frames = this.record.frames.filter((frame) => frame.seq > last);
    this.record.nextSeq = Math.max(this.record.nextSeq, last + 1);
    this.persist();
    return this.pending();
  }

  markEnded() {
    if (this.ended) return;
    this.record.ended = true;
    this.persist();
  }

  forget() {
    try {
      this.storage.removeItem(this.key);
    } catch {} // stays until the next clean-up
  }

  // Also the heartbeat of a live page (touchedAt).
  persist() {
    Object.assign(this.record, { owner: this.owner, touchedAt: this.now() });
    try {
      this.storage.setItem(this.key, JSON.stringify(this.record));
      this.persistError = null;
    } catch (error) {
      this.persistError = error; // still sent from memory
    }
  }
}

// Outboxes with frames or an undelivered `end`, unless another tab touched them lately (it
// delivers them). Stale empty ones (seq bookkeeping) are removed.
export function leftovers(storage, { owner = "", now = Date.now(), staleAfterMs = 15000 } = {}) {
  let keys; // all first: removing a key renumbers the rest
  try {
    keys = Array.from({ length: storage.length }, (_, i) => storage.key(i));
  } catch {
    return [];
  }
  const found = [];
  for (const key of keys) {
    if (!key?.startsWith(PREFIX)) continue;
    const record = load(storage, key);
    const fresh = record && now - (record.touchedAt || 0) < staleAfterMs;
    if (fresh && record.owner && record.owner !== owner) continue;
    if (record && (record.frames.length || record.ended)) found.push({ conversationId: key.slice(PREFIX.length), socketUrl: record.socketUrl });
    else if (!fresh) storage.removeItem(key);
  }
  return found;
}

// The transcript outbox: each forwarded event waits here, persisted, until the server acks it.
// Pure logic over a Storage-like object (localStorage; a Map in the node tests).
// localStorage rather than IndexedDB: its writes are synchronous, so a frame is stored before
// it can be sent and no reload or crash in between can lose it.

// The events the transcript is derived from (DESIGN.md), GA and beta names; never deltas.
export const FORWARDED_TYPES = new Set([
  "conversation.item.added", "conversation.item.done", "conversation.item.created", "conversation.item.deleted",
  "conversation.item.truncated", "conversation.item.input_audio_transcription.completed",
  "conversation.item.input_audio_transcription.failed", "response.output_audio_transcript.done",
  "response.audio_transcript.done", "response.output_text.done", "response.text.done", "response.done", "error",
]);

export const shouldForward = (event) => Boolean(event) && FORWARDED_TYPES.has(event.type);

const PREFIX = "voice.outbox.";
export const storageKey = (conversationId) => PREFIX + conversationId;

// A stored record, or null if damaged or absent (start afresh).
function parse(raw) {
  try {
    const record = JSON.parse(raw);
    if (record && record.v === 1 && Array.isArray(record.frames) && Number.isInteger(record.nextSeq)) return record;
  } catch {}
  return null;
}

export class Outbox {
  // owner: this browser tab's id (sessionStorage survives a reload), so that a new page can
  // tell its own leftovers from another tab's live outbox.
  constructor(storage, conversationId, { socketUrl = "", owner = "", now = Date.now } = {}) {
    Object.assign(this, { storage, conversationId, owner, now, persistError: null });
    let raw = null;
    try {
      raw = storage.getItem(storageKey(conversationId));
    } catch {} // unreadable storage: an empty outbox
    this.record = parse(raw) || { v: 1, nextSeq: 1, frames: [], socketUrl, ended: false };
    if (socketUrl) this.record.socketUrl = socketUrl;
  }

  get socketUrl() { return this.record.socketUrl; }
  get size() { return this.record.frames.length; }
  get ended() { return this.record.ended; }
  get nextSeq() { return this.record.nextSeq; }
  // Ended by the user and all delivered: the record can go.
  get finished() { return this.record.ended && !this.record.frames.length; }

  pending() {
    return this.record.frames.slice();
  }

  // Stored before anyone can send it.
  push(event) {
    const frame = { type: "event", seq: this.record.nextSeq++, event };
    this.record.frames.push(frame);
    this.persist();
    return frame;
  }

  // Frame `seq` is stored (ack), or refused for good (reject: resending cannot help, and
  // keeping it would stop the outbox from ever draining). Returns whether it was pending.
  ack(seq) {
    const before = this.size;
    this.record.frames = this.record.frames.filter((frame) => frame.seq !== seq);
    if (this.size === before) return false;
    this.persist();
    return true;
  }

  reject(seq) {
    return this.ack(seq);
  }

  // `ready`: the server holds everything up to lastSeq. Drop that, never reuse those numbers,
  // and return the rest to resend, in order.
  ready(lastSeq) {
    const last = Number.isInteger(lastSeq) && lastSeq > 0 ? lastSeq : 0;
    const before = this.size;
    this.record.frames = this.record.frames.filter((frame) => frame.seq > last);
    if (this.size !== before || this.record.nextSeq <= last) {
      this.record.nextSeq = Math.max(this.record.nextSeq, last + 1);
      this.persist();
    }
    return this.pending();
  }

  markEnded() {
    if (this.record.ended) return;
    this.record.ended = true;
    this.persist();
  }

  forget() {
    try {
      this.storage.removeItem(storageKey(this.conversationId));
    } catch {} // stays until the next clean-up
  }

  // Also the heartbeat of a live page (touchedAt).
  persist() {
    Object.assign(this.record, { owner: this.owner, touchedAt: this.now() });
    try {
      this.storage.setItem(storageKey(this.conversationId), JSON.stringify(this.record));
      this.persistError = null;
    } catch (error) {
      // Quota or privacy mode: still sent from memory; only a reload could lose them now.
      this.persistError = error;
    }
  }
}

// What a newly loaded page should deliver: outboxes with frames or an undelivered `end`, unless
// another tab touched them lately (it is delivering them). Stale empty records are only seq
// bookkeeping of finished pages: removed, so storage does not grow without bound.
export function leftovers(storage, { owner = "", now = Date.now(), staleAfterMs = 15000 } = {}) {
  const found = [];
  let keys = [];
  try {
    keys = Array.from({ length: storage.length }, (_, i) => storage.key(i));
  } catch {
    return found;
  }
  for (const key of keys) {
    if (!key?.startsWith(PREFIX)) continue;
    const record = parse(storage.getItem(key));
    const fresh = record && now - (record.touchedAt || 0) < staleAfterMs;
    if (fresh && record.owner && record.owner !== owner) continue;
    if (record && (record.frames.length || record.ended)) {
      found.push({ conversationId: key.slice(PREFIX.length), socketUrl: record.socketUrl, count: record.frames.length, ended: record.ended });
    } else if (!fresh) {
      storage.removeItem(key);
    }
  }
  return found;
}

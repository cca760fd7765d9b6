// The live transcript: TranscriptModel turns events into lines (node-tested), TranscriptView
// draws them. status: pending (transcribing) | live (reply in progress) | completed | failed |
// interrupted | deleted.
//
// TranscriptModel follows the server's reducer (conversations/transcript/reducer.py; its
// docstring says what each event means), so that what the page shows at the end is what is
// stored: tests/test_reducer_parity.py runs every recorded fixture through both. Only the deltas,
// which are never forwarded, are the page's own: they fill an open line until its final text.
// In short: a line's place and role are fixed by the first (non-delta) event that names it;
// a failed reply is "interrupted" with its reason in `error`; a truncated reply is "interrupted"
// (text as generated); a deleted item stays, marked "deleted", and changes no more; a closed
// line's text is never replaced by a different final text (counted in `conflicts`).

import { LineList } from "../common/line.js";

const TEXT_PARTS = new Set(["input_text", "output_text", "text"]);
const AUDIO_PARTS = new Set(["input_audio", "output_audio", "audio"]);
const ITEM_EVENTS = new Set(["conversation.item.added", "conversation.item.done", "conversation.item.created", "conversation.item.retrieved"]);
const AUDIO_DONE = new Set(["response.output_audio_transcript.done", "response.audio_transcript.done"]);
const TEXT_DONE = new Set(["response.output_text.done", "response.text.done"]);
const ASSISTANT_DELTA = /^response\.(output_audio_transcript|audio_transcript|output_text|text)\.delta$/;
const UNFINISHED = new Set(["cancelled", "incomplete", "failed"]);
const MAX_ID_LENGTH = 100; // the server treats longer "ids" as absent
const MAX_ERROR_LENGTH = 500;
const MAX_STATUS_LENGTH = 32;

const isObject = (value) => value !== null && typeof value === "object" && !Array.isArray(value);
const str = (value) => (typeof value === "string" ? value : null);
const chars = (text, max) => Array.from(text).slice(0, max).join(""); // code points, as Python counts
const itemId = (value) => (typeof value === "string" && value && (value.length <= MAX_ID_LENGTH || Array.from(value).length <= MAX_ID_LENGTH) ? value : null);
const errorText = (error, fallback) => chars((isObject(error) && (str(error.message) || str(error.code))) || fallback, MAX_ERROR_LENGTH);
const isOpen = (line) => line.status === "pending" || line.status === "live";
// A different final text for a closed line that has one: a conflict, never applied.
const rewrites = (line, text) => !isOpen(line) && line.saved !== "" && text !== line.saved;

function parseItem(item) {
  if (!isObject(item)) return null;
  const id = itemId(item.id);
  const type = Object.hasOwn(item, "type") ? item.type : "message";
  if (!id || type !== "message" || (item.role !== "user" && item.role !== "assistant")) return null;
  let kind = null;
  const texts = [];
  for (const raw of Array.isArray(item.content) ? item.content : []) {
    const part = isObject(raw) ? raw : {};
    let value;
    if (AUDIO_PARTS.has(part.type)) {
      kind = "audio";
      value = str(part.transcript);
    } else if (TEXT_PARTS.has(part.type)) {
      kind = kind || "text";
      value = str(part.text);
    } else continue;
    if (value !== null) texts.push(value);
  }
  const text = texts.length ? texts.filter(Boolean).join("\n") : null;
  return { id, role: item.role, kind, text, status: str(item.status) };
}

export class TranscriptModel {
  constructor() {
    this.reset();
  }

  reset() {
    this.byId = new Map();
    this.order = [];
    this.responses = new Map(); // response id → how it ended (the first response.done wins)
    this.conflicts = 0;
  }

  get lines() {
    return this.order.map((id) => this.byId.get(id));
  }

  // Returns the ids of the lines it changed (or may have changed).
  apply(event) {
    this.changed = new Set();
    if (!isObject(event)) return [];
    const type = str(event.type);
    if (ITEM_EVENTS.has(type)) {
      const item = parseItem(event.item);
      if (item) this.item(item);
    } else if (type === "conversation.item.input_audio_transcription.completed") this.transcription(event, true);
    else if (type === "conversation.item.input_audio_transcription.failed") this.transcription(event, false);
    else if (AUDIO_DONE.has(type)) this.assistantText(event, "audio", "transcript");
    else if (TEXT_DONE.has(type)) this.assistantText(event, "text", "text");
    else if (type === "response.done") this.responseDone(isObject(event.response) ? event.response : {});
    else if (type === "conversation.item.truncated") this.truncated(itemId(event.item_id));
    else if (type === "conversation.item.deleted") this.deleted(itemId(event.item_id));
    else if (type === "input_audio_buffer.committed") {
      const id = itemId(event.item_id);
      if (id && !this.byId.has(id)) this.create(id, "user", "audio");
    } else if (type === "conversation.item.input_audio_transcription.delta") this.userDelta(event);
    else if (ASSISTANT_DELTA.test(type)) this.assistantDelta(event);
    return [...this.changed];
  }

  // A new line at the end: the item enters the conversation now.
  create(id, role, kind) {
    const line = { id, role, kind, text: "", saved: "", partial: false, status: role === "user" ? "pending" : "live", error: "", responseId: "" };
    this.byId.set(id, line);
    this.order.push(id);
    this.changed.add(id);
    return line;
  }

  // The line of `id` (created as `role` if new), or null when the event must leave it alone:
  // it is deleted, or it has the other role (a conflict).
  line(id, role, kind) {
    const line = this.byId.get(id) || this.create(id, role, kind);
    if (line.role !== role) {
      this.conflicts += 1;
      return null;
    }
    this.changed.add(id);
    return line.status === "deleted" ? null : line;
  }

  // A final text: what the server stores, and from now on what the line shows.
  setText(line, text) {
    Object.assign(line, { saved: text, text, partial: false });
  }

  unfinished(line) {
    return line.status === "interrupted" || UNFINISHED.has(this.responses.get(line.responseId));
  }

  // Returns false when the event had to leave the line alone (deleted, or a conflict).
  item(item) {
    const line = this.line(item.id, item.role, item.kind || (item.role === "user" ? "text" : "audio"));
    if (!line) return false;
    const kind = item.kind || line.kind;
    const applies = item.text !== null && (line.role === "user" ? kind === "text" : item.text !== "");
    if (applies && rewrites(line, item.text)) {
      this.conflicts += 1;
      return false;
    }
    line.kind = kind;
    if (line.role === "user") {
      // Spoken input is completed by its transcription events alone.
      if (kind === "text" && item.text !== null) {
        this.setText(line, item.text);
        Object.assign(line, { status: "completed", error: "" });
      }
    } else {
      if (item.text !== null && (item.text || !line.saved)) {
        if (item.text || !line.partial) this.setText(line, item.text);
        else line.saved = item.text; // an empty part while the reply streams: keep the draft
      }
      if (item.status === "incomplete" || this.unfinished(line)) line.status = "interrupted";
      else if (item.status === "completed" && isOpen(line)) line.status = "completed";
    }
    return true;
  }

  transcription(event, completed) {
    const id = itemId(event.item_id);
    const transcript = str(event.transcript);
    if (!id || (completed && transcript === null)) return;
    const line = this.line(id, "user", "audio");
    if (!line || line.kind !== "audio") return;
    if (line.status === "completed") {
      if (completed && rewrites(line, transcript)) this.conflicts += 1;
      return;
    }
    if (completed) {
      this.setText(line, transcript);
      Object.assign(line, { status: "completed", error: "" });
    } else {
      Object.assign(line, { status: "failed", error: errorText(event.error, "Transcription failed.") });
    }
  }

  assistantText(event, kind, key) {
    const id = itemId(event.item_id);
    const text = str(event[key]);
    if (!id || text === null) return;
    const line = this.line(id, "assistant", kind);
    if (!line) return;
    if (rewrites(line, text)) {
      this.conflicts += 1;
      return;
    }
    line.kind = kind;
    this.setText(line, text);
    line.responseId = line.responseId || itemId(event.response_id) || "";
    line.status = this.unfinished(line) ? "interrupted" : "completed";
  }

  responseDone(response) {
    const id = itemId(response.id);
    let status = chars(str(response.status) || "", MAX_STATUS_LENGTH);
    // A response ends once: a later, contradicting response.done does not change its outcome.
    if (id && this.responses.has(id)) status = this.responses.get(id);
    const named = [];
    for (const raw of Array.isArray(response.output) ? response.output : []) {
      const item = parseItem(raw);
      if (!item || item.role !== "assistant" || !this.item(item)) continue;
      named.push(item.id);
      const line = this.byId.get(item.id);
      if (id) line.responseId = line.responseId || id;
    }
    for (const lineId of named) {
      const line = this.byId.get(lineId);
      if (UNFINISHED.has(status)) {
        const details = isObject(response.status_details) ? response.status_details : {};
        const error = status === "failed" ? errorText(details.error, "The reply failed.") : "";
        Object.assign(line, { status: "interrupted", error: line.error || error });
      } else if (status === "completed" && isOpen(line)) line.status = "completed";
    }
    if (id && !this.responses.has(id)) this.responses.set(id, status);
  }

  truncated(id) {
    const line = id && this.byId.get(id);
    // Only an assistant line can be cut; an unknown item has nothing to mark.
    if (line?.role !== "assistant" || line.status === "deleted") return;
    line.status = "interrupted";
    this.changed.add(id);
  }

  deleted(id) {
    const line = id && this.byId.get(id);
    if (!line) return;
    line.status = "deleted";
    this.changed.add(id);
  }

  // Deltas (the page's own: never forwarded) fill an open line until its final text arrives.
  userDelta(event) {
    const line = this.byId.get(itemId(event.item_id));
    if (line?.role !== "user" || line.status !== "pending" || typeof event.delta !== "string") return;
    Object.assign(line, { text: (line.partial ? line.text : "") + event.delta, partial: true });
    this.changed.add(line.id);
  }

  assistantDelta(event) {
    const line = this.byId.get(itemId(event.item_id));
    if (line?.role !== "assistant" || line.status !== "live" || typeof event.delta !== "string") return;
    Object.assign(line, { text: (line.partial ? line.text : "") + event.delta, partial: true });
    this.changed.add(line.id);
  }
}

// Drawn by common/line.js, as the history page draws them; a line gets its position and time
// when the page first sees its item.
export class TranscriptView {
  constructor({ list, empty, scroller }, labels, timeZone) {
    Object.assign(this, { lines: new LineList(list, labels, { empty, timeZone }), scroller, seen: new Map() });
  }

  clear() {
    this.lines.clear();
    this.seen.clear();
  }

  update(model, changedIds) {
    if (!changedIds.length) return;
    const s = this.scroller;
    const follow = s.scrollHeight - s.scrollTop - s.clientHeight < 48; // the reader is at the end
    for (const id of changedIds) {
      const line = model.byId.get(id);
      if (!line) this.lines.remove(id);
      else {
        if (!this.seen.has(id)) this.seen.set(id, { position: this.seen.size, created_at: new Date().toISOString() });
        this.lines.show({ ...line, ...this.seen.get(id), item_id: id });
      }
    }
    if (follow) s.scrollTop = s.scrollHeight;
  }
}

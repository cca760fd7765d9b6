// The live transcript: TranscriptModel turns events into lines (node-tested), TranscriptView
// draws them. A line keeps its item's place: a user's transcript, often late, fills the line
// above the reply. status: pending | live (reply in progress) | completed | failed | interrupted

import { LineList } from "../common/line.js";

const TEXT_PARTS = new Set(["input_text", "output_text", "text"]);
const AUDIO_PARTS = new Set(["input_audio", "output_audio", "audio"]);
const ASSISTANT_TEXT = /^response\.(output_audio_transcript|audio_transcript|output_text|text)\.(delta|done)$/;

export class TranscriptModel {
  constructor() {
    this.reset();
  }

  reset() {
    this.byId = new Map();
    this.order = [];
  }

  get lines() {
    return this.order.map((id) => this.byId.get(id));
  }

  // Returns the ids of the lines it changed.
  apply(event) {
    const type = event?.type;
    const id = event?.item_id;
    switch (type) {
      case "conversation.item.added":
      case "conversation.item.created":
      case "conversation.item.done":
        return this.item(event.item);
      case "conversation.item.input_audio_transcription.delta":
        return this.edit(id, "user", (line) => {
          if (line.status !== "pending" || typeof event.delta !== "string") return;
          line.text = (line.partial ? line.text : "") + event.delta;
          line.partial = true;
        });
      case "conversation.item.input_audio_transcription.completed":
        return this.edit(id, "user", (line) => finish(line, String(event.transcript ?? "")));
      case "conversation.item.input_audio_transcription.failed":
        return this.edit(id, "user", (line) => {
          Object.assign(line, { status: "failed", partial: false, error: event.error?.message || event.error?.code || "Transcription failed" });
        });
      case "conversation.item.truncated": // barge-in: the reply's audio was cut
        return this.byId.get(id)?.role === "assistant" ? this.edit(id, "assistant", (line) => (line.status = "interrupted")) : [];
      case "response.done":
        return this.responseDone(event.response || {});
      case "conversation.item.deleted":
        if (!this.byId.delete(id)) return [];
        this.order = this.order.filter((other) => other !== id);
        return [id];
      default:
        return ASSISTANT_TEXT.test(type) ? this.assistantText(event) : [];
    }
  }

  // Created at the end the first time an item is named.
  edit(id, role, change) {
    if (!id) return [];
    let line = this.byId.get(id);
    if (!line) {
      line = { id, role, kind: "audio", text: "", partial: false, status: role === "user" ? "pending" : "live", error: "", responseId: "" };
      this.byId.set(id, line);
      this.order.push(id);
    }
    change(line);
    return [id];
  }

  item(item) {
    if (item?.type !== "message" || (item.role !== "user" && item.role !== "assistant")) return [];
    const content = Array.isArray(item.content) ? item.content : [];
    const typed = content.find((part) => TEXT_PARTS.has(part?.type) && typeof part.text === "string");
    const spoken = content.find((part) => AUDIO_PARTS.has(part?.type) && part.transcript);
    return this.edit(item.id, item.role, (line) => {
      if (typed) {
        line.kind = "text";
        if (item.role === "user" || item.status === "completed") finish(line, typed.text);
        else line.text = typed.text;
      } else if (spoken) {
        finish(line, String(spoken.transcript));
      }
    });
  }

  assistantText(event) {
    const done = event.type.endsWith(".done");
    if (!done && typeof event.delta !== "string") return [];
    return this.edit(event.item_id, "assistant", (line) => {
      if (event.response_id) line.responseId = event.response_id;
      if (event.type.includes("text.")) line.kind = "text";
      if (done) finish(line, String(event.transcript ?? event.text ?? line.text));
      else if (line.status !== "completed") {
        line.text += event.delta;
        line.partial = true;
      }
    });
  }

  responseDone(response) {
    const ids = new Set((response.output || []).map((item) => item?.id));
    for (const line of this.byId.values()) if (response.id && line.responseId === response.id) ids.add(line.id);
    const changed = [];
    for (const id of ids) {
      const line = this.byId.get(id);
      if (line?.role !== "assistant") continue;
      if (response.status === "cancelled" || response.status === "incomplete") line.status = "interrupted";
      else if (response.status === "failed") {
        line.status = "failed";
        line.error = response.status_details?.error?.message || "The reply failed";
      } else if (line.status === "live") line.status = "completed";
      line.partial = false;
      changed.push(id);
    }
    return changed;
  }
}

// An interrupted reply keeps its mark.
function finish(line, text) {
  Object.assign(line, { text, partial: false });
  if (line.status !== "interrupted") line.status = "completed";
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

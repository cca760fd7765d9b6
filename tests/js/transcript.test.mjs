import assert from "node:assert/strict";
import { test } from "node:test";

import { TranscriptModel } from "../../static/voice/transcript.js";

const userAudio = (id) => ({ type: "conversation.item.added", item: { id, type: "message", role: "user", status: "completed", content: [{ type: "input_audio", transcript: null }] } });
const assistant = (id) => ({ type: "conversation.item.added", item: { id, type: "message", role: "assistant", status: "in_progress", content: [] } });
const view = (model) => model.lines.map((l) => [l.role, l.text, l.status]);

test("a late user transcript lands above the reply it prompted", () => {
  const m = new TranscriptModel();
  m.apply(userAudio("u1"));
  m.apply(assistant("a1"));
  m.apply({ type: "response.output_audio_transcript.delta", item_id: "a1", response_id: "r1", delta: "Hel" });
  m.apply({ type: "response.output_audio_transcript.delta", item_id: "a1", response_id: "r1", delta: "lo" });
  assert.deepEqual(view(m), [["user", "", "pending"], ["assistant", "Hello", "live"]]);
  m.apply({ type: "response.output_audio_transcript.done", item_id: "a1", response_id: "r1", transcript: "Hello there." });
  m.apply({ type: "response.done", response: { id: "r1", status: "completed", output: [{ id: "a1" }] } });
  m.apply({ type: "conversation.item.input_audio_transcription.completed", item_id: "u1", transcript: "Hi!" });
  assert.deepEqual(view(m), [["user", "Hi!", "completed"], ["assistant", "Hello there.", "completed"]]);
});

test("the first forwarded event naming an item places it, even a transcript", () => {
  const m = new TranscriptModel();
  m.apply({ type: "conversation.item.input_audio_transcription.completed", item_id: "u1", transcript: "Where?" });
  m.apply({ type: "response.audio_transcript.done", item_id: "a1", response_id: "r1", transcript: "Sure" });
  m.apply(userAudio("u1")); // announced late: keeps its place
  assert.deepEqual(m.order, ["u1", "a1"]);
  assert.deepEqual(view(m), [["user", "Where?", "completed"], ["assistant", "Sure", "completed"]]);
});

test("deltas only fill lines the server knows too: they never place one", () => {
  const m = new TranscriptModel();
  assert.deepEqual(m.apply({ type: "conversation.item.input_audio_transcription.delta", item_id: "u1", delta: "Wh" }), []);
  assert.deepEqual(m.apply({ type: "response.audio_transcript.delta", item_id: "a1", response_id: "r1", delta: "Sure" }), []);
  assert.equal(m.lines.length, 0);
  m.apply(userAudio("u1"));
  m.apply({ type: "conversation.item.input_audio_transcription.delta", item_id: "u1", delta: "Wh" });
  assert.equal(m.lines[0].text, "Wh");
  assert.equal(m.lines[0].partial, true);
});

test("user deltas are replaced by the final transcript", () => {
  const m = new TranscriptModel();
  m.apply(userAudio("u1"));
  m.apply({ type: "conversation.item.input_audio_transcription.delta", item_id: "u1", delta: "wat " });
  m.apply({ type: "conversation.item.input_audio_transcription.delta", item_id: "u1", delta: "time" });
  assert.equal(m.lines[0].text, "wat time");
  m.apply({ type: "conversation.item.input_audio_transcription.completed", item_id: "u1", transcript: "What time is it?" });
  assert.deepEqual(view(m), [["user", "What time is it?", "completed"]]);
  assert.equal(m.lines[0].partial, false);
});

test("a failed transcription is marked with its reason", () => {
  const m = new TranscriptModel();
  m.apply(userAudio("u1"));
  m.apply({ type: "conversation.item.input_audio_transcription.failed", item_id: "u1", error: { code: "audio_unintelligible", message: "Audio was unintelligible" } });
  assert.equal(m.lines[0].status, "failed");
  assert.equal(m.lines[0].error, "Audio was unintelligible");
});

test("barge-in: a cancelled response keeps its text and is marked interrupted", () => {
  const m = new TranscriptModel();
  m.apply(assistant("a1"));
  m.apply({ type: "response.output_audio_transcript.delta", item_id: "a1", response_id: "r1", delta: "Once upon" });
  m.apply({ type: "response.done", response: { id: "r1", status: "cancelled", output: [{ id: "a1", type: "message", role: "assistant", status: "incomplete", content: [{ type: "output_audio", transcript: null }] }] } });
  assert.deepEqual(view(m), [["assistant", "Once upon", "interrupted"]]);
  // The transcript.done that follows a cancel does not unmark it.
  m.apply({ type: "response.output_audio_transcript.done", item_id: "a1", response_id: "r1", transcript: "Once upon a" });
  assert.deepEqual(view(m), [["assistant", "Once upon a", "interrupted"]]);
});

test("truncation marks the assistant line interrupted", () => {
  const m = new TranscriptModel();
  m.apply(assistant("a1"));
  assert.deepEqual(m.apply({ type: "conversation.item.truncated", item_id: "a1", audio_end_ms: 500 }), ["a1"]);
  assert.equal(m.lines[0].status, "interrupted");
});

test("typed messages and text replies, GA and beta spellings", () => {
  const m = new TranscriptModel();
  m.apply({ type: "conversation.item.created", item: { id: "u1", type: "message", role: "user", content: [{ type: "input_text", text: "hello" }] } });
  m.apply({ type: "response.text.delta", item_id: "a1", response_id: "r1", delta: "Hi" });
  m.apply({ type: "response.output_text.done", item_id: "a1", response_id: "r1", text: "Hi there" });
  assert.deepEqual(view(m), [["user", "hello", "completed"], ["assistant", "Hi there", "completed"]]);
  assert.equal(m.lines[0].kind, "text");
  assert.equal(m.lines[1].kind, "text");
});

test("item.done carries the final assistant transcript", () => {
  const m = new TranscriptModel();
  m.apply(assistant("a1"));
  m.apply({ type: "conversation.item.done", item: { id: "a1", type: "message", role: "assistant", status: "completed", content: [{ type: "output_audio", transcript: "Done." }] } });
  assert.deepEqual(view(m), [["assistant", "Done.", "completed"]]);
});

test("non-message items, unknown events and malformed events change nothing", () => {
  const m = new TranscriptModel();
  assert.deepEqual(m.apply({ type: "conversation.item.added", item: { id: "f1", type: "function_call" } }), []);
  assert.deepEqual(m.apply({ type: "session.created", session: {} }), []);
  assert.deepEqual(m.apply({}), []);
  assert.deepEqual(m.apply(null), []);
  assert.deepEqual(m.apply({ type: "response.output_audio_transcript.delta" }), []);
  assert.equal(m.lines.length, 0);
});

test("a deleted item stays in its place, marked deleted, and changes no more", () => {
  const m = new TranscriptModel();
  m.apply(userAudio("u1"));
  m.apply(userAudio("u2"));
  assert.deepEqual(m.apply({ type: "conversation.item.deleted", item_id: "u1" }), ["u1"]);
  assert.deepEqual(m.order, ["u1", "u2"]);
  assert.equal(m.lines[0].status, "deleted");
  m.apply({ type: "conversation.item.input_audio_transcription.completed", item_id: "u1", transcript: "late" });
  assert.deepEqual(view(m)[0], ["user", "", "deleted"]);
  assert.deepEqual(m.apply({ type: "conversation.item.deleted", item_id: "nope" }), []);
});

const failedResponse = (id, itemId, transcript, error) => ({
  type: "response.done",
  response: { id, status: "failed", status_details: { type: "failed", error }, output: [{ id: itemId, type: "message", role: "assistant", status: "incomplete", content: [{ type: "output_audio", transcript }] }] },
});

test("a failed reply keeps what was generated, interrupted, with the reason", () => {
  const m = new TranscriptModel();
  m.apply(assistant("a1"));
  m.apply({ type: "response.output_audio_transcript.delta", item_id: "a1", response_id: "r1", delta: "Let me" });
  m.apply(failedResponse("r1", "a1", "Let me check", { type: "server_error", message: "Server error." }));
  assert.deepEqual(view(m), [["assistant", "Let me check", "interrupted"]]);
  assert.equal(m.lines[0].error, "Server error.");
  const n = new TranscriptModel();
  n.apply(assistant("a1"));
  n.apply(failedResponse("r1", "a1", null, {}));
  assert.equal(n.lines[0].error, "The reply failed.");
});

test("a line's role never changes: the contradicting event is counted, not applied", () => {
  const m = new TranscriptModel();
  m.apply(userAudio("u1"));
  m.apply({ type: "conversation.item.input_audio_transcription.completed", item_id: "u1", transcript: "Hi" });
  m.apply({ type: "conversation.item.done", item: { id: "u1", type: "message", role: "assistant", status: "completed", content: [{ type: "output_audio", transcript: "I said this" }] } });
  m.apply({ type: "response.output_audio_transcript.done", item_id: "u1", response_id: "r9", transcript: "Me too" });
  assert.deepEqual(view(m), [["user", "Hi", "completed"]]);
  assert.equal(m.conflicts, 2);
});

test("a completed line keeps its final text: a different one is a conflict", () => {
  const m = new TranscriptModel();
  m.apply(assistant("a1"));
  m.apply({ type: "response.output_audio_transcript.done", item_id: "a1", response_id: "r1", transcript: "Yes." });
  m.apply({ type: "response.output_audio_transcript.done", item_id: "a1", response_id: "r1", transcript: "Yes." }); // the same: fine
  assert.equal(m.conflicts, 0);
  m.apply({ type: "response.output_audio_transcript.done", item_id: "a1", response_id: "r1", transcript: "No." });
  m.apply({ type: "conversation.item.done", item: { id: "a1", type: "message", role: "assistant", status: "completed", content: [{ type: "output_audio", transcript: "No." }] } });
  assert.deepEqual(view(m), [["assistant", "Yes.", "completed"]]);
  assert.equal(m.conflicts, 2);
});

test("truncation keeps the generated text of a finished reply", () => {
  const m = new TranscriptModel();
  m.apply(assistant("a1"));
  m.apply({ type: "response.output_audio_transcript.done", item_id: "a1", response_id: "r1", transcript: "A long answer." });
  m.apply({ type: "response.done", response: { id: "r1", status: "completed", output: [{ id: "a1", type: "message", role: "assistant", status: "completed", content: [] }] } });
  m.apply({ type: "conversation.item.truncated", item_id: "a1", content_index: 0, audio_end_ms: 800 });
  assert.deepEqual(view(m), [["assistant", "A long answer.", "interrupted"]]);
  assert.deepEqual(m.apply({ type: "conversation.item.truncated", item_id: "nope", audio_end_ms: 1 }), []);
});

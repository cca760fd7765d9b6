import assert from "node:assert/strict";
import { test } from "node:test";

import { FORWARDED_TYPES, Outbox, leftovers, shouldForward, storageKey } from "../../static/voice/outbox.js";
import { MemoryStorage } from "./helpers.mjs";

const ev = (n) => ({ type: "conversation.item.added", event_id: `e${n}` });

test("frames get increasing seqs and are stored before they are returned", () => {
  const storage = new MemoryStorage();
  const box = new Outbox(storage, "c1", { socketUrl: "/ws/conversations/c1/" });
  const a = box.push(ev(1));
  const stored = JSON.parse(storage.getItem(storageKey("c1")));
  assert.deepEqual(stored.frames, [a]);
  const b = box.push(ev(2));
  assert.deepEqual([a.seq, b.seq], [1, 2]);
  assert.deepEqual(a, { type: "event", seq: 1, event: ev(1) });
});

test("seq numbering survives a reload (a new Outbox over the same storage)", () => {
  const storage = new MemoryStorage();
  const first = new Outbox(storage, "c1");
  first.push(ev(1));
  first.push(ev(2));
  first.ack(1);
  first.ack(2);
  const again = new Outbox(storage, "c1");
  assert.equal(again.size, 0);
  assert.equal(again.push(ev(3)).seq, 3);
});

test("ack removes exactly that frame; unknown acks are harmless", () => {
  const box = new Outbox(new MemoryStorage(), "c1");
  [1, 2, 3].forEach((n) => box.push(ev(n)));
  assert.equal(box.ack(2), true);
  assert.equal(box.ack(2), false);
  assert.equal(box.ack(99), false);
  assert.deepEqual(box.pending().map((f) => f.seq), [1, 3]);
});

test("ready drops what the server holds and returns the rest in order", () => {
  const box = new Outbox(new MemoryStorage(), "c1");
  [1, 2, 3, 4].forEach((n) => box.push(ev(n)));
  assert.deepEqual(box.ready(2).map((f) => f.seq), [3, 4]);
  assert.deepEqual(box.ready(0).map((f) => f.seq), [3, 4]);
});

test("ready with a higher last_seq never lets a seq be reused", () => {
  const box = new Outbox(new MemoryStorage(), "c1");
  box.ready(7);
  assert.equal(box.push(ev(1)).seq, 8);
});

test("ready ignores nonsense last_seq", () => {
  const box = new Outbox(new MemoryStorage(), "c1");
  box.push(ev(1));
  assert.equal(box.ready(null).length, 1);
  assert.equal(box.ready(-3).length, 1);
  assert.equal(box.ready("2").length, 1);
});

test("a failing storage keeps the frames in memory and reports it", () => {
  const storage = new MemoryStorage();
  storage.setItem = () => {
    throw new Error("QuotaExceededError");
  };
  const box = new Outbox(storage, "c1");
  box.push(ev(1));
  assert.equal(box.size, 1);
  assert.ok(box.persistError);
});

test("a damaged record is treated as empty", () => {
  const storage = new MemoryStorage();
  storage.setItem(storageKey("c1"), "{not json");
  const box = new Outbox(storage, "c1");
  assert.equal(box.push(ev(1)).seq, 1);
});

test("ended and emptied: finished, and forget removes the record", () => {
  const storage = new MemoryStorage();
  const box = new Outbox(storage, "c1");
  box.push(ev(1));
  box.markEnded();
  assert.equal(box.finished, false);
  box.ack(1);
  assert.equal(box.finished, true);
  box.forget();
  assert.equal(storage.getItem(storageKey("c1")), null);
});

test("leftovers: own and stale outboxes with frames or an undelivered end; not another live tab's", () => {
  const storage = new MemoryStorage();
  const now = 1_000_000;
  const mine = new Outbox(storage, "mine", { socketUrl: "/ws/m/", owner: "tab-a", now: () => now - 1000 });
  mine.push(ev(1));
  const other = new Outbox(storage, "other", { socketUrl: "/ws/o/", owner: "tab-b", now: () => now - 1000 });
  other.push(ev(1));
  const stale = new Outbox(storage, "stale", { socketUrl: "/ws/s/", owner: "tab-b", now: () => now - 60_000 });
  stale.push(ev(1));
  const ended = new Outbox(storage, "ended", { socketUrl: "/ws/e/", owner: "tab-a", now: () => now - 1000 });
  ended.markEnded();
  const emptyOld = new Outbox(storage, "empty", { owner: "tab-b", now: () => now - 60_000 });
  emptyOld.persist();
  storage.setItem("unrelated", "x");
  const found = leftovers(storage, { owner: "tab-a", now });
  assert.deepEqual(found.map((f) => f.conversationId).sort(), ["ended", "mine", "stale"]);
  assert.equal(storage.getItem(storageKey("empty")), null, "stale empty records are cleaned up");
  assert.equal(storage.getItem("unrelated"), "x");
});

test("the forwarded types cover every event the design lists, and no deltas", () => {
  for (const type of [
    "conversation.item.added",
    "conversation.item.done",
    "conversation.item.created",
    "conversation.item.input_audio_transcription.completed",
    "conversation.item.input_audio_transcription.failed",
    "response.output_audio_transcript.done",
    "response.audio_transcript.done",
    "response.output_text.done",
    "response.text.done",
    "response.done",
    "error",
  ]) {
    assert.ok(shouldForward({ type }), type);
  }
  for (const type of FORWARDED_TYPES) assert.ok(!type.endsWith(".delta"), type);
  assert.equal(shouldForward({ type: "response.output_audio_transcript.delta" }), false);
  assert.equal(shouldForward(null), false);
});

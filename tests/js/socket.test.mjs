import assert from "node:assert/strict";
import { beforeEach, test } from "node:test";

import { Outbox } from "../../static/voice/outbox.js";
import { backoffDelay, closeMeaning, socketUrl } from "../../static/common/websocket.js";
import { TranscriptSocket } from "../../static/voice/socket.js";
import { FakeWebSocket, ManualTimers, MemoryStorage } from "./helpers.mjs";

let timers;
let storage;
let statuses;
const ev = (n) => ({ type: "conversation.item.added", n });

function makeSocket(options = {}) {
  const outbox = new Outbox(storage, "c1", { socketUrl: "/ws/conversations/c1/" });
  const socket = new TranscriptSocket("ws://x/ws/conversations/c1/", outbox, {
    WebSocket: FakeWebSocket,
    timers,
    backoff: { min: 100, max: 1000, random: () => 1 },
    onStatus: (s) => statuses.push(s),
    ...options,
  });
  return socket.start();
}

beforeEach(() => {
  FakeWebSocket.instances = [];
  timers = new ManualTimers();
  storage = new MemoryStorage();
  statuses = [];
});

test("nothing is sent before ready; on ready everything pending goes out in order", () => {
  const socket = makeSocket();
  socket.push(ev(1));
  socket.push(ev(2));
  const ws = FakeWebSocket.last();
  ws.open();
  assert.deepEqual(ws.sent, []);
  ws.message({ type: "ready", conversation: "c1", last_seq: 0 });
  assert.deepEqual(ws.frames(), [1, 2]);
  socket.push(ev(3));
  assert.deepEqual(ws.frames(), [1, 2, 3]);
  ws.message({ type: "ack", seq: 1 });
  ws.message({ type: "ack", seq: 2 });
  assert.equal(socket.outbox.size, 1);
  assert.equal(statuses.at(-1).pending, 1);
  assert.equal(statuses.at(-1).state, "online");
});

test("after a drop it reconnects with backoff and resends only what the server lacks", () => {
  const socket = makeSocket();
  let ws = FakeWebSocket.last();
  ws.open();
  ws.message({ type: "ready", last_seq: 0 });
  [1, 2, 3].forEach((n) => socket.push(ev(n)));
  ws.message({ type: "ack", seq: 1 });
  ws.drop();
  assert.equal(socket.state, "offline");
  socket.push(ev(4)); // arrives while offline: stored, not sent
  timers.advance(99);
  assert.equal(FakeWebSocket.instances.length, 1);
  timers.advance(1);
  ws = FakeWebSocket.last();
  assert.equal(FakeWebSocket.instances.length, 2);
  ws.open();
  ws.message({ type: "ready", last_seq: 2 }); // frame 2 was stored, its ack lost
  assert.deepEqual(ws.frames(), [3, 4]);
  assert.deepEqual(socket.outbox.pending().map((f) => f.seq), [3, 4]);
});

test("backoff grows and is capped; it resets after a ready", () => {
  const socket = makeSocket();
  FakeWebSocket.last().drop();
  timers.advance(100);
  FakeWebSocket.last().drop();
  timers.advance(199);
  assert.equal(FakeWebSocket.instances.length, 2);
  timers.advance(1);
  assert.equal(FakeWebSocket.instances.length, 3);
  const ws = FakeWebSocket.last();
  ws.open();
  ws.message({ type: "ready", last_seq: 0 });
  assert.equal(socket.retry.attempt, 0);
  assert.equal(backoffDelay(10, { min: 100, max: 1000, random: () => 1 }), 1000);
  assert.equal(backoffDelay(0, { min: 100, max: 1000, random: () => 0 }), 50);
});

test("a socket that never says ready is abandoned and retried", () => {
  makeSocket({ readyTimeoutMs: 500 });
  FakeWebSocket.last().open();
  timers.advance(500);
  assert.equal(FakeWebSocket.instances.length, 1);
  timers.advance(100);
  assert.equal(FakeWebSocket.instances.length, 2);
});

test("a rejected frame leaves the outbox and is reported", () => {
  const errors = [];
  const socket = makeSocket({ onFrameError: (e) => errors.push(e) });
  const ws = FakeWebSocket.last();
  ws.open();
  ws.message({ type: "ready", last_seq: 0 });
  socket.push(ev(1));
  ws.message({ type: "error", seq: 1, code: "too_large", message: "…" });
  assert.equal(socket.outbox.size, 0);
  assert.equal(errors[0].code, "too_large");
});

test("quota_exceeded and conversation_closed are final: the frame is dropped, the next ones still go", () => {
  for (const code of ["quota_exceeded", "conversation_closed"]) {
    storage = new MemoryStorage();
    const errors = [];
    const socket = makeSocket({ onFrameError: (e) => errors.push(e) });
    const ws = FakeWebSocket.last();
    ws.open();
    ws.message({ type: "ready", last_seq: 0 });
    socket.push(ev(1));
    socket.push(ev(2));
    ws.message({ type: "error", seq: 1, code, message: "…" });
    assert.deepEqual(socket.outbox.pending().map((f) => f.seq), [2]);
    assert.equal(errors[0].code, code);
    ws.drop(1006); // after a reconnect only the unanswered frame is resent
    timers.advance(1000);
    const next = FakeWebSocket.last();
    next.open();
    next.message({ type: "ready", last_seq: 0 });
    assert.deepEqual(next.frames(), [2]);
  }
});

test("a rate-limited frame is not a rejection: it stays and goes again, from the first refused, after retry_after", () => {
  const errors = [];
  const socket = makeSocket({ onFrameError: (e) => errors.push(e) });
  const ws = FakeWebSocket.last();
  ws.open();
  ws.message({ type: "ready", last_seq: 0 });
  [1, 2, 3, 4].forEach((n) => socket.push(ev(n)));
  ws.message({ type: "ack", seq: 1 });
  ws.message({ type: "error", seq: 2, code: "rate_limited", retry_after: 2, message: "…" });
  ws.message({ type: "error", seq: 3, code: "rate_limited", retry_after: 1, message: "…" });
  ws.message({ type: "error", seq: 4, code: "rate_limited", retry_after: 1, message: "…" });
  assert.deepEqual(errors, []);
  assert.deepEqual(socket.outbox.pending().map((f) => f.seq), [2, 3, 4]);
  socket.push(ev(5)); // sent at once; the server holds it back too
  ws.message({ type: "error", seq: 5, code: "rate_limited", retry_after: 1, message: "…" });
  ws.sent = [];
  timers.advance(1999);
  assert.deepEqual(ws.frames(), []);
  timers.advance(1);
  assert.deepEqual(ws.frames(), [2, 3, 4, 5]);
  [2, 3, 4, 5].forEach((seq) => ws.message({ type: "ack", seq }));
  assert.equal(socket.outbox.size, 0);
});

test("a rate-limited end is sent again", () => {
  const socket = makeSocket();
  const ws = FakeWebSocket.last();
  ws.open();
  ws.message({ type: "ready", last_seq: 0 });
  socket.end();
  ws.message({ type: "error", seq: null, code: "rate_limited", retry_after: 1, message: "…" });
  ws.sent = [];
  timers.advance(1000);
  assert.equal(ws.sent[0].type, "end");
  ws.message({ type: "ended" });
  assert.equal(socket.state, "finished");
});

test("4500 (the database failed) and 4503 (the server fell behind) reconnect with backoff", () => {
  for (const code of [4500, 4503]) {
    FakeWebSocket.instances = [];
    const socket = makeSocket();
    FakeWebSocket.last().drop(code);
    assert.equal(socket.state, "offline");
    timers.advance(1000);
    assert.equal(FakeWebSocket.instances.length, 2);
    socket.stop();
  }
});

test("4401 and 4404 stop reconnecting", () => {
  for (const [code, state] of [[4401, "denied"], [4404, "gone"]]) {
    FakeWebSocket.instances = [];
    const socket = makeSocket();
    FakeWebSocket.last().drop(code);
    assert.equal(socket.state, state);
    timers.advance(60_000);
    assert.equal(FakeWebSocket.instances.length, 1);
  }
});

test("4429 (too many sockets) and any other 4xxx code retry with backoff", () => {
  const socket = makeSocket();
  FakeWebSocket.last().drop(4429);
  assert.equal(socket.state, "crowded");
  timers.advance(100);
  assert.equal(FakeWebSocket.instances.length, 2);
  FakeWebSocket.last().drop(4013); // a code this page does not know yet
  assert.equal(socket.state, "offline");
  timers.advance(200);
  assert.equal(FakeWebSocket.instances.length, 3);
  assert.deepEqual([1000, 1006, 1011, 4000, 4403, 4999].map(closeMeaning), Array(6).fill("retry"));
});

test("end is sent after the pending frames; a pong then finishes and forgets the outbox", () => {
  const socket = makeSocket();
  socket.push(ev(1));
  socket.end();
  const ws = FakeWebSocket.last();
  ws.open();
  ws.message({ type: "ready", last_seq: 0 });
  assert.deepEqual(ws.sent.map((m) => m.type), ["event", "end"]);
  ws.message({ type: "ack", seq: 1 });
  assert.equal(ws.sent.at(-1).type, "ping");
  ws.message({ type: "pong" });
  assert.equal(socket.state, "finished");
  assert.equal(storage.length, 0);
});

test("an `ended` reply finishes too", () => {
  const socket = makeSocket();
  socket.end();
  const ws = FakeWebSocket.last();
  ws.open();
  ws.message({ type: "ready", last_seq: 0 });
  ws.message({ type: "ended", conversation: "c1" });
  assert.equal(socket.state, "finished");
});

test("an end that was not delivered before a reload is delivered by the next page", () => {
  const first = makeSocket();
  first.push(ev(1));
  first.end(); // no server: nothing delivered
  first.stop();
  const outbox = new Outbox(storage, "c1");
  assert.equal(outbox.ended, true);
  const second = new TranscriptSocket("ws://x/", outbox, { WebSocket: FakeWebSocket, timers }).start();
  const ws = FakeWebSocket.last();
  ws.open();
  ws.message({ type: "ready", last_seq: 0 });
  assert.deepEqual(ws.sent.map((m) => m.type), ["event", "end"]);
  assert.equal(second.closing, true);
});

test("socket URLs: absolute paths get the page's host and a ws scheme", () => {
  assert.equal(socketUrl("/ws/c/", { protocol: "https:", host: "a.example" }), "wss://a.example/ws/c/");
  assert.equal(socketUrl("/ws/c/", { protocol: "http:", host: "127.0.0.1:8000" }), "ws://127.0.0.1:8000/ws/c/");
  assert.equal(socketUrl("ws://b/ws/", { protocol: "https:", host: "a" }), "ws://b/ws/");
});

test("page hide sends what this connection has not sent yet, even before ready, and nothing twice", () => {
  const socket = makeSocket();
  const ws = FakeWebSocket.last();
  ws.open();
  socket.push(ev(1));
  socket.push(ev(2));
  socket.flush();
  assert.deepEqual(ws.frames(), [1, 2]);
  socket.flush();
  assert.deepEqual(ws.frames(), [1, 2]);
  ws.message({ type: "ready", last_seq: 0 });
  socket.push(ev(3));
  socket.flush();
  assert.deepEqual(ws.frames(), [1, 2, 1, 2, 3]);
});

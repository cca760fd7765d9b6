// The call id: read from OpenAI's answer (browser mode) and reported on the transcript socket
// until the server binds it; server mode posts the offer to our server instead.
import assert from "node:assert/strict";
import { afterEach, beforeEach, test } from "node:test";

import { RealtimeCall, callIdFromLocation, mintSession, startServerCall } from "../../static/voice/connection.js";
import { Outbox } from "../../static/voice/outbox.js";
import { TranscriptSocket } from "../../static/voice/socket.js";
import { FakeWebSocket, ManualTimers, MemoryStorage } from "./helpers.mjs";

const ANSWER = "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\n";
let fetches;
const realFetch = globalThis.fetch;

function answerWith(status, body, headers = {}) {
  globalThis.fetch = async (url, init) => {
    fetches.push({ url, init });
    return new Response(body, { status, headers });
  };
}

beforeEach(() => {
  fetches = [];
});
afterEach(() => {
  globalThis.fetch = realFetch;
  delete globalThis.RTCPeerConnection;
});

test("the call id is the last segment of Location, and only an rtc_ id", () => {
  assert.equal(callIdFromLocation("/v1/realtime/calls/rtc_u1_AbC-9"), "rtc_u1_AbC-9");
  assert.equal(callIdFromLocation("https://api.openai.com/v1/realtime/calls/rtc_abc/?x=1"), "rtc_abc");
  for (const bad of [null, undefined, "", "/v1/realtime/calls/", "/v1/realtime/calls/sess_1", "/calls/rtc_a%2Fb", "rtc_" + "a".repeat(101)]) {
    assert.equal(callIdFromLocation(bad), null, String(bad));
  }
});

test("browser mode: the answer's Location names the call", async () => {
  answerWith(201, ANSWER, { "Content-Type": "application/sdp", Location: "/v1/realtime/calls/rtc_live1" });
  const call = new RealtimeCall({});
  const result = await call.exchange("https://openai.test/v1/realtime/calls", "ek_1", "v=0 offer");
  assert.deepEqual(result, { answer: ANSWER, callId: "rtc_live1" });
  const [{ url, init }] = fetches;
  assert.equal(url, "https://openai.test/v1/realtime/calls");
  assert.equal(init.headers.Authorization, "Bearer ek_1");
  assert.equal(init.body, "v=0 offer");
});

test("browser mode: an unreadable Location (header not exposed) leaves no call id, the call goes on", async () => {
  answerWith(201, ANSWER, { "Content-Type": "application/sdp" });
  assert.deepEqual(await new RealtimeCall({}).exchange("https://openai.test/v1/realtime/calls", "ek_1", "v=0"), { answer: ANSWER, callId: null });
});

class FakePeer {
  static last;
  constructor() {
    FakePeer.last = this;
  }
  addTrack() {}
  createDataChannel(name) {
    return (this.channel = { name, close() {} });
  }
  async createOffer() {
    return { type: "offer", sdp: "v=0 the offer" };
  }
  async setLocalDescription() {}
  async setRemoteDescription(description) {
    this.remote = description;
    queueMicrotask(() => this.channel.onopen());
  }
  close() {}
}

const stream = { getAudioTracks: () => [] };

test("connect keeps the call id of a browser-made call", async () => {
  globalThis.RTCPeerConnection = FakePeer;
  answerWith(201, ANSWER, { Location: "/v1/realtime/calls/rtc_made_here" });
  const call = new RealtimeCall({ onState() {} });
  await call.connect({ callsUrl: "https://openai.test/v1/realtime/calls", key: "ek_1", stream });
  assert.equal(call.callId, "rtc_made_here");
  assert.deepEqual(FakePeer.last.remote, { type: "answer", sdp: ANSWER });
});

test("server mode: the offer goes to our server, and its answer is used; no key, no call id to report", async () => {
  globalThis.RTCPeerConnection = FakePeer;
  const body = { conversation: { id: "c1", url: "/conversations/c1/" }, sdp: ANSWER, socket_url: "/ws/conversations/c1/", voice: "marin" };
  answerWith(201, JSON.stringify(body), { "Content-Type": "application/json" });
  const call = new RealtimeCall({ onState() {} });
  let started;
  await call.connect({ stream, exchange: async (sdp) => {
    started = await startServerCall("/api/realtime/calls", "tok", { voice: "marin", sdp });
    return { answer: started.sdp };
  } });
  const [{ url, init }] = fetches;
  assert.equal(url, "/api/realtime/calls");
  assert.equal(init.headers["X-CSRFToken"], "tok");
  assert.deepEqual(JSON.parse(init.body), { voice: "marin", sdp: "v=0 the offer" });
  assert.deepEqual(started, body);
  assert.deepEqual(FakePeer.last.remote, { type: "answer", sdp: ANSWER });
  assert.equal(call.callId, null);
});

test("server mode: a refusal is the API's failure, like a key refusal", async () => {
  answerWith(403, JSON.stringify({ error: { code: "ephemeral_keys_disabled", message: "No keys here." } }), { "Content-Type": "application/json" });
  await assert.rejects(mintSession("/api/realtime/sessions", "tok", {}), (failure) => failure.kind === "api" && failure.details.code === "ephemeral_keys_disabled" && failure.details.status === 403);
  answerWith(201, JSON.stringify({ conversation: { id: "c1" }, socket_url: "/ws/conversations/c1/" })); // no answer
  await assert.rejects(startServerCall("/api/realtime/calls", "tok", { sdp: "v=0" }), (failure) => failure.kind === "api" && /incomplete/.test(failure.message));
});

// --- the call frame on the transcript socket ---------------------------------------------------

let timers;
function makeSocket() {
  const outbox = new Outbox(new MemoryStorage(), "c1", { socketUrl: "/ws/conversations/c1/" });
  return new TranscriptSocket("ws://x/ws/conversations/c1/", outbox, {
    WebSocket: FakeWebSocket, timers, backoff: { min: 100, max: 1000, random: () => 1 }, onFrameError() {},
  }).start();
}
const calls = (ws) => ws.sent.filter((m) => m.type === "call");

test("the call frame goes after ready, and again after a reconnect until it is bound", () => {
  FakeWebSocket.instances = [];
  timers = new ManualTimers();
  const socket = makeSocket();
  let ws = FakeWebSocket.last();
  ws.open();
  socket.reportCall("rtc_1"); // before ready: waits
  assert.deepEqual(calls(ws), []);
  ws.message({ type: "ready", last_seq: 0 });
  assert.deepEqual(calls(ws), [{ type: "call", call_id: "rtc_1" }]);
  ws.drop(); // no reply yet
  timers.advance(100);
  ws = FakeWebSocket.last();
  ws.open();
  ws.message({ type: "ready", last_seq: 0 });
  assert.deepEqual(calls(ws), [{ type: "call", call_id: "rtc_1" }]);
  ws.message({ type: "call", call_id: "rtc_1", status: "bound" });
  ws.drop();
  timers.advance(200);
  ws = FakeWebSocket.last();
  ws.open();
  ws.message({ type: "ready", last_seq: 0 });
  assert.deepEqual(calls(ws), []); // bound: not sent again
});

test("a call refused for good is not resent; a rate-limited one is", () => {
  FakeWebSocket.instances = [];
  timers = new ManualTimers();
  const socket = makeSocket();
  let ws = FakeWebSocket.last();
  ws.open();
  ws.message({ type: "ready", last_seq: 0 });
  socket.reportCall("rtc_2");
  ws.message({ type: "error", seq: null, code: "rate_limited", retry_after: 1, message: "slow down" });
  timers.advance(1000);
  assert.equal(calls(ws).length, 2);
  ws.message({ type: "error", seq: null, code: "call_taken", call_id: "rtc_2", message: "another conversation's" });
  ws.drop();
  timers.advance(100);
  ws = FakeWebSocket.last();
  ws.open();
  ws.message({ type: "ready", last_seq: 0 });
  assert.deepEqual(calls(ws), []);
});

import assert from "node:assert/strict";
import { beforeEach, test } from "node:test";

import { capLength, capReached, capState, capWords, describeEnd } from "../../static/voice/caps.js";
import { Outbox } from "../../static/voice/outbox.js";
import { TranscriptSocket } from "../../static/voice/socket.js";
import { FakeWebSocket, ManualTimers, MemoryStorage } from "./helpers.mjs";

const config = { sessionLimitSeconds: 1800, warnBeforeSeconds: 120, sessionGraceSeconds: 10 };

beforeEach(() => {
  FakeWebSocket.instances = [];
});

test("the cap is said in words", () => {
  assert.equal(capWords(1800), "30-minute");
  assert.equal(capWords(90), "90-second");
  assert.equal(capLength(3600), "60 minutes");
  assert.equal(capReached(config).message, "This session reached its 30-minute limit.");
});

test("time left shows in the last two minutes; the page ends the session only after the grace", () => {
  assert.deepEqual(capState(config, 1000 * 1000), { leftMs: 800_000, near: false, over: false });
  assert.equal(capState(config, 1680 * 1000).near, true);
  assert.equal(capState(config, 1805 * 1000).over, false); // the server's hang-up comes first
  assert.equal(capState(config, 1810 * 1000).over, true);
  assert.equal(capState({ ...config, sessionGraceSeconds: 0 }, 1800 * 1000).over, true); // no witness
});

test("a cap offers to continue; a spent budget does not", () => {
  const cap = describeEnd({ reason: "session_cap", message: "This session reached its 30-minute limit." });
  assert.equal(cap.resume, true);
  assert.match(cap.message, /^This session reached its 30-minute limit\. Continue this conversation/);
  const budget = describeEnd({ reason: "budget", message: "You have used today's voice budget ($5.00)." });
  assert.equal(budget.resume, false);
  assert.equal(budget.message, "You have used today's voice budget ($5.00).");
});

test("the socket hands call_ended to the page", () => {
  const ended = [];
  const outbox = new Outbox(new MemoryStorage(), "c1", { socketUrl: "/ws/conversations/c1/" });
  new TranscriptSocket("ws://x/ws/conversations/c1/", outbox, {
    WebSocket: FakeWebSocket, timers: new ManualTimers(), onCallEnded: (frame) => ended.push(frame),
  }).start();
  const ws = FakeWebSocket.instances[0];
  ws.open();
  ws.message({ type: "ready", last_seq: 0 });
  ws.message({ type: "call_ended", reason: "session_cap", message: "m" });
  assert.deepEqual(ended, [{ type: "call_ended", reason: "session_cap", message: "m" }]);
});

test("a conversation refused for the cap is not offered Continue", async () => {
  const { VoiceFailure, describeFailure } = await import("../../static/voice/failures.js");
  const message = "This conversation has reached its 30-minute limit. Start a new conversation to go on talking.";
  const refused = describeFailure(new VoiceFailure("api", { status: 409, code: "session_limit_reached", message }));
  assert.deepEqual(refused, { retry: true, title: "Session time limit reached", message, resume: false });
});

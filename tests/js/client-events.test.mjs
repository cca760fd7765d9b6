import assert from "node:assert/strict";
import { test } from "node:test";

import * as client from "../../static/voice/connection.js";
import { VoiceFailure, classifyOpenAIError, describeFailure, formatWait, parseRetryAfter } from "../../static/voice/failures.js";
import { formatClock } from "../../static/voice/controls.js";

test("a turn detection change sends the server's setting for the mode, null for push-to-talk", () => {
  assert.deepEqual(client.sessionUpdate(null), { type: "session.update", session: { type: "realtime", audio: { input: { turn_detection: null } } } });
  const semantic = { type: "semantic_vad", eagerness: "auto" };
  assert.deepEqual(client.sessionUpdate(semantic).session.audio.input.turn_detection, semantic);
});

test("the client event sequences", () => {
  assert.deepEqual(client.pushToTalkPress().map((e) => e.type), ["input_audio_buffer.clear"]);
  assert.deepEqual(client.pushToTalkRelease().map((e) => e.type), ["input_audio_buffer.commit", "response.create"]);
  assert.deepEqual(client.interruptReply().map((e) => e.type), ["response.cancel", "output_audio_buffer.clear"]);
  const [create, respond] = client.typedMessage("hi");
  assert.deepEqual(create.item.content, [{ type: "input_text", text: "hi" }]);
  assert.equal(respond.type, "response.create");
});

test("every failure has a title and a message; the rate limit says how long to wait", () => {
  const limited = describeFailure(new VoiceFailure("api", { status: 429, code: "rate_limited", retryAfter: 42 }));
  assert.match(limited.message, /42 seconds/);
  // The server's own words win: they say which limit, and how long to wait.
  const message = "You have started as many voice sessions as allowed for one day. Please try again in 3 hours.";
  const daily = describeFailure(new VoiceFailure("api", { status: 429, code: "rate_limited", message, retryAfter: 10800 }));
  assert.equal(daily.message, message);
  assert.equal(daily.retryAfter, 10800);
  assert.equal(describeFailure(new VoiceFailure("api", { status: 503, code: "not_configured" })).retry, false);
  assert.match(describeFailure(new VoiceFailure("sdp", { status: 400, message: "Invalid SDP." })).message, /\(HTTP 400\): Invalid SDP\. Press Start/);
  assert.match(describeFailure(new VoiceFailure("mic", { name: "NotAllowedError" })).title, /blocked/);
  assert.match(describeFailure(new VoiceFailure("mic", { name: "NotFoundError" })).title, /No microphone/);
  assert.equal(describeFailure(new VoiceFailure("expired")).resume, true);
  for (const kind of ["api-network", "sdp-network", "timeout", "ice", "channel-closed", "openai", "whatever"]) {
    const d = describeFailure(new VoiceFailure(kind, {}));
    assert.ok(d.title && d.message, kind);
  }
});

test("waits and clocks read naturally", () => {
  assert.equal(formatWait(1), "1 second");
  assert.equal(formatWait(42.2), "43 seconds");
  assert.equal(formatWait(600), "10 minutes");
  assert.equal(parseRetryAfter("17"), 17);
  assert.equal(parseRetryAfter(null), null);
  assert.equal(parseRetryAfter(new Date(10_000).toUTCString(), 0), 10);
  assert.equal(formatClock(65_000), "1:05");
  assert.equal(formatClock(3_600_000 + 5000), "1:00:05");
});

test("OpenAI error events: session_expired ends, harmless ones are ignored", () => {
  assert.equal(classifyOpenAIError({ error: { code: "session_expired" } }).action, "expired");
  assert.equal(classifyOpenAIError({ error: { code: "response_cancel_not_active" } }).action, "ignore");
  assert.equal(classifyOpenAIError({ error: { code: "input_audio_buffer_commit_empty" } }).action, "hint");
  assert.equal(classifyOpenAIError({ error: { code: "server_error", message: "x" } }).action, "notify");
});

// The voice page. Start → microphone → key → call → live; lost (connection, time cap) →
// Continue: a new key and call, same conversation.

import { BudgetMeter } from "./budget.js";
import { capLength, capReached, capState, describeEnd } from "./caps.js";
import * as openai from "./connection.js";
import { Controls } from "./controls.js";
import { VoiceFailure, classifyOpenAIError, describeFailure } from "./failures.js";
import { shouldForward } from "./outbox.js";
import { SessionRecorder, recordingKey, uploader } from "./recorder.js";
import { Deliveries } from "./socket.js";
import { TranscriptModel, TranscriptView } from "./transcript.js";
import { Visualiser } from "./visualiser.js";

const $ = (id) => document.getElementById(id);
const config = JSON.parse($("voice-config").textContent);

const model = new TranscriptModel();
const view = new TranscriptView({ list: $("transcript"), empty: $("transcript-empty"), scroller: $("transcript-scroll") }, config.labels, config.timeZone);
const visualiser = new Visualiser([$("mic-canvas"), $("model-canvas")]);
const speaker = $("voice").appendChild(Object.assign(document.createElement("audio"), { autoplay: true, hidden: true }));

const session = {
  attempt: 0, // bumped by start, continue and stop: stale results are ignored
  conversation: null,
  wentLive: false, // if not, a retry reuses the conversation: no empty ones
  stream: null, call: null, socket: null, startedAt: 0, segment: 1, remote: null,
  muted: false, pushing: false, responding: false, speaking: false, warned: false,
};

const ui = new Controls({ start, stop, resume, mute, interrupt, send, mode: changeMode, pushStart, pushEnd });
const budget = new BudgetMeter($("budget-meter"), config.budgetUrl);
budget.show(config.budget);
const deliveries = new Deliveries((summary) => ui.setSaveState(summary), frameRefused, callEnded);
const recording = config.recording || { mode: "off" };
const chunks = uploader($("voice").dataset.csrf, { onGiveUp: recordingRefused });
const recorder = new SessionRecorder({ queue: chunks, chunkMs: recording.chunkMs, uploadUrl: recording.uploadUrl, onState: recordingState });

if (!config.openaiConfigured) ui.blockStart(true);
deliveries.recover();
if (recording.mode !== "off") chunks.recover(); // what a reload or a failure left unsent
$("record-audio")?.addEventListener("change", saveRecordAudio);
setInterval(tick, 1000);
addEventListener("online", () => deliveries.retryAll());
addEventListener("pagehide", () => {
  deliveries.flushAll();
  closeCall();
  releaseMicrophone();
});

// A refused frame has left the outbox already (final); running out of storage is worth saying.
function frameRefused(message) {
  console.warn("Transcript frame refused", message);
  if (message.code === "quota_exceeded") {
    ui.showAlert({ tone: "warning", title: "The transcript is no longer being saved", message: message.message });
  }
}

async function start() {
  if (ui.phase === "starting" || ui.phase === "live") return;
  performance.mark("voice:start");
  visualiser.audioContext(); // inside the click: only a user gesture may start audio
  if (session.wentLive || !session.conversation) newConversation();
  await begin();
}

async function resume() {
  if (!session.conversation || (ui.phase !== "lost" && ui.phase !== "live")) return;
  closeCall();
  await begin();
}

async function begin() {
  const attempt = ++session.attempt;
  ui.clearAlert();
  ui.setPhase("starting");
  try {
    await ensureMicrophone(attempt);
    const csrf = $("voice").dataset.csrf;
    const wanted = { voice: ui.voice, turn_detection: ui.mode, conversation: session.conversation?.id };
    const ours = (handle) => (value) => call === session.call && handle(value); // not a replaced call's
    const call = new openai.RealtimeCall({ onEvent: ours(received), onState: ours(callState), onRemoteStream: ours(playRemote) });
    if (config.connect === "server") {
      // Our server makes the call with our offer: it knows the call, and no key reaches the page.
      ui.setStatus("Connecting to OpenAI…");
      session.call = call;
      await call.connect({ stream: session.stream, exchange: async (sdp) => {
        const data = await openai.startServerCall(config.callsApiUrl, csrf, { ...wanted, sdp });
        current(attempt);
        adopt(data);
        return { answer: data.sdp };
      } });
    } else {
      ui.setStatus("Starting a session…");
      const data = await openai.mintSession(config.apiUrl, csrf, wanted);
      current(attempt);
      adopt(data);
      ui.setStatus("Connecting to OpenAI…");
      session.call = call;
      await call.connect({ callsUrl: data.calls_url, key: data.client_secret, stream: session.stream });
      // Which call this conversation is (from OpenAI's answer), for the server to follow.
      if (call.callId) session.socket?.reportCall(call.callId);
    }
    current(attempt);
    performance.mark("voice:open");
    goLive();
  } catch (failure) {
    failed(failure, attempt);
  }
}

function current(attempt) {
  if (attempt !== session.attempt) throw new VoiceFailure("cancelled");
}

function stop() {
  session.attempt += 1;
  closeCall();
  releaseMicrophone();
  ui.clearAlert();
  session.socket?.end(); // after every pending transcript event
  const ended = session.wentLive;
  ui.showConversationLink(ended ? session.conversation.url : "");
  ui.setPhase(ended ? "ended" : "idle");
  ui.setStatus(ended ? "Session ended. The conversation is saved in your history; press Start for a new one." : "Stopped. Press Start when you are ready.");
  forgetConversation();
  ui.focusMain();
  budget.refreshSoon();
}

function newConversation() {
  model.reset();
  view.clear();
  ui.showConversationLink("");
  forgetConversation();
  session.wentLive = false;
}

function forgetConversation() {
  session.conversation = session.socket = deliveries.liveId = null;
}

async function ensureMicrophone(attempt) {
  if (session.stream?.getAudioTracks().every((track) => track.readyState === "live")) return;
  ui.setStatus("Waiting for permission to use the microphone…");
  const stream = await openai.openMicrophone();
  if (attempt !== session.attempt) stopTracks(stream);
  current(attempt);
  session.stream = stream;
  visualiser.attach(0, stream);
  stream.getAudioTracks()[0].addEventListener("ended", () => {
    if (ui.phase === "live") ui.showAlert({ tone: "warning", title: "Microphone disconnected", message: "The microphone stopped working. Reconnect it, then press Continue.", resume: true });
  });
}

function adopt(data) {
  const { id } = data.conversation;
  session.conversation = data.conversation;
  session.segment = Number.isInteger(data.segment) ? data.segment : 1; // this session's recording
  session.socket = deliveries.open(id, data.socket_url); // the same one on Continue
  deliveries.liveId = id;
  ui.setSaveState(deliveries.summary());
}

function goLive() {
  Object.assign(session, { wentLive: true, startedAt: performance.now(), warned: false, muted: false });
  ui.showMute(false);
  ui.setPhase("live");
  applyMicrophone();
  ui.setTimer(0);
  ui.setContinueLabel("Continue");
  ui.showConversationLink(session.conversation.url);
  idleStatus();
  ui.focusMain();
  if (recordingWanted()) {
    const streams = [session.stream, session.remote].filter(Boolean);
    recorder.start(visualiser.audioContext(), { conversation: session.conversation.id, segment: session.segment, streams });
  }
}

function failed(failure, attempt) {
  if (attempt !== session.attempt || failure?.kind === "cancelled") return;
  if (!(failure instanceof VoiceFailure)) console.error(failure);
  closeCall();
  const described = describeFailure(failure);
  budget.show(failure?.details?.budget); // a budget refusal says where the user stands
  const canResume = session.wentLive && described.resume !== false;
  if (!canResume) releaseMicrophone();
  ui.setPhase(canResume ? "lost" : "idle");
  ui.showAlert({ ...described, resume: canResume && described.retry });
  ui.setStatus(canResume ? "The session is paused." : "Not connected.");
  if (!described.retry || described.retryAfter > 0) ui.blockStart(true);
  if (described.retryAfter > 0) {
    setTimeout(() => {
      ui.blockStart(!config.openaiConfigured);
      if (ui.phase !== "idle") return;
      ui.clearAlert();
      ui.setStatus("You can start a new session now.");
    }, described.retryAfter * 1000);
  }
}

// Ended under us: keep conversation and microphone; offer Continue.
function lose(kind) {
  if (ui.phase === "live") failed(new VoiceFailure(kind), session.attempt);
}

function closeCall() {
  recorder.stop(); // its last chunk is still uploaded
  session.call?.close();
  Object.assign(session, { call: null, remote: null, responding: false, speaking: false, pushing: false });
  speaker.srcObject = null;
  ui.setNote("mic", "");
  ui.setNote("model", "");
}

function releaseMicrophone() {
  stopTracks(session.stream);
  session.stream = null;
  visualiser.detachAll();
}

const stopTracks = (stream) => stream?.getTracks().forEach((track) => track.stop());

function received(event) {
  // Into the outbox first: stored before anything can go wrong.
  if (shouldForward(event)) session.socket?.push(event);
  view.update(model, model.apply(event));
  switch (event.type) {
    case "input_audio_buffer.speech_started":
      ui.setStatus("Listening…");
      ui.setNote("mic", "speaking");
      break;
    case "input_audio_buffer.speech_stopped":
      ui.setStatus("Thinking…");
      ui.setNote("mic", "");
      break;
    case "response.created":
      session.responding = true;
      break;
    case "response.done":
      session.responding = false;
      budget.refreshSoon();
      idleStatus();
      break;
    case "output_audio_buffer.started":
      session.speaking = true;
      ui.setStatus("The assistant is speaking. Interrupt with Esc, or just talk.");
      ui.setNote("model", "speaking");
      break;
    case "output_audio_buffer.stopped":
    case "output_audio_buffer.cleared":
      session.speaking = false;
      ui.setNote("model", "");
      idleStatus();
      break;
    case "error": {
      const verdict = classifyOpenAIError(event);
      if (verdict.action === "expired") lose("expired");
      else if (verdict.action === "hint") ui.setStatus(verdict.message);
      else if (verdict.action === "notify") ui.showAlert({ tone: "warning", ...describeFailure(new VoiceFailure("openai", verdict.error)) });
      break;
    }
  }
  ui.setInterruptible(session.responding || session.speaking);
}

function callState(state) {
  if (state === "failed") lose("ice");
  else if (state === "channel-closed") lose("channel-closed");
  else if (state === "unstable" && ui.phase === "live") {
    ui.showAlert({ tone: "warning", title: "Connection unstable", message: "The audio connection to OpenAI is interrupted. Waiting for it to recover…" });
  } else if (state === "connected" && ui.phase === "live") ui.clearAlert();
}

function playRemote(stream) {
  session.remote = stream;
  recorder.add(stream);
  speaker.srcObject = stream;
  speaker.play().catch((error) => {
    // AbortError: the call ended first. Only a refusal needs the user.
    if (error.name !== "NotAllowedError") return;
    ui.setStatus("Your browser blocked audio playback: click anywhere on the page to hear the assistant.");
    document.addEventListener("click", () => speaker.play().catch(() => {}), { once: true });
  });
  visualiser.attach(1, stream);
}

function applyMicrophone() {
  const manual = ui.mode === "manual";
  const on = manual ? session.pushing : !session.muted;
  session.stream?.getAudioTracks().forEach((track) => (track.enabled = on));
  if (ui.phase === "live") ui.setNote("mic", on ? "" : manual ? "hold to talk" : "muted");
}

function idleStatus() {
  if (ui.phase !== "live" || session.speaking) return;
  if (ui.mode === "manual") ui.setStatus("Hold the Talk button (or Space) while you speak.");
  else ui.setStatus(session.muted ? "Your microphone is muted." : "Listening — just speak.");
}

function mute(muted) {
  session.muted = muted;
  applyMicrophone();
  idleStatus();
}

function changeMode(mode) {
  session.pushing = false;
  if (ui.phase === "live") session.call?.send([openai.sessionUpdate(config.turnDetection[mode].config)]);
  applyMicrophone();
  idleStatus();
}

function pushStart() {
  session.call?.send(openai.pushToTalkPress());
  session.pushing = true;
  applyMicrophone();
  ui.setStatus("Listening… release to send.");
}

function pushEnd() {
  session.pushing = false;
  applyMicrophone();
  session.call?.send(openai.pushToTalkRelease());
  ui.setStatus("Sent. Waiting for the answer…");
}

function send(text) {
  session.call?.send(openai.typedMessage(text));
}

function interrupt() {
  session.call?.send(openai.interruptReply());
  ui.setInterruptible(false);
  ui.setStatus("Interrupted.");
}

// The server ended the call (`call_ended`), or the page's timer did at the cap. Not while a new
// session is starting: the frame is about the call it replaces.
function callEnded(frame) {
  if (ui.phase !== "live" && ui.phase !== "lost") return;
  session.attempt += 1;
  closeCall();
  const end = describeEnd(frame);
  if (frame.budget) budget.show(frame.budget); // a budget hang-up says where the user stands
  else budget.refreshSoon();
  if (end.resume) {
    ui.setPhase("lost");
    ui.setContinueLabel("Continue this conversation");
    ui.setStatus("The session has ended.");
  } else {
    releaseMicrophone();
    session.socket?.end();
    ui.showConversationLink(session.conversation?.url || "");
    ui.setPhase("ended");
    ui.setStatus("Session ended. The conversation is saved in your history.");
    forgetConversation();
  }
  ui.showAlert(end);
  ui.focusMain();
}

function tick() {
  deliveries.heartbeat();
  const summary = deliveries.summary();
  if (summary.retryInMs) ui.setSaveState(summary);
  if (ui.phase !== "live") return;
  const elapsed = performance.now() - session.startedAt;
  const cap = capState(config, elapsed);
  ui.setTimer(elapsed, cap.near ? Math.max(0, cap.leftMs) : null);
  if (cap.over) return callEnded(capReached(config));
  if (!session.warned && cap.near) {
    session.warned = true;
    ui.showAlert({
      tone: "info",
      title: "This session ends soon",
      message: `Sessions last at most ${capLength(config.sessionLimitSeconds)}. Continue now in a new session to carry on this conversation without a break.`,
      resume: true,
    });
  }
}

// --- Recording (static/voice/recorder.js) ------------------------------------------------------

function recordingWanted() {
  return recording.mode === "on" || (recording.mode === "opt-in" && Boolean($("record-audio")?.checked));
}

function recordingState({ recording: on, problem }) {
  $("recording-indicator").hidden = !on;
  if (problem) ui.showAlert({ tone: "warning", title: "Recording stopped", message: `${problem} The session goes on without recording.` });
}

// The server cannot take this recording any more (too large, not audio, conversation closed…).
function recordingRefused(chunk, { code, message }) {
  console.warn("Recording refused", code, message);
  recorder.refused(recordingKey(chunk), message);
}

// The switch is remembered per user (their preferences), from the next Start.
async function saveRecordAudio(event) {
  const box = event.target;
  const wanted = box.checked;
  const failed = (message) => {
    box.checked = !wanted;
    ui.showAlert({ tone: "warning", title: "Could not save “Record audio”", message });
  };
  try {
    const response = await fetch(recording.switchUrl, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRFToken": $("voice").dataset.csrf },
      body: JSON.stringify({ record_audio: wanted }),
    });
    if (!response.ok) failed((await response.json().catch(() => null))?.error?.message || `The server answered ${response.status}.`);
  } catch {
    failed("The server could not be reached. Try again.");
  }
}

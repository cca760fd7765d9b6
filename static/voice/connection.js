// The key from our server, the microphone, the WebRTC call to OpenAI and the client events
// it sends (docs/realtime.md). Every failure becomes a VoiceFailure. Two ways to make the call
// (config.connect): "browser" mints a key and posts the offer to OpenAI itself; "server" posts
// the offer to our /api/realtime/calls and the server makes the call (no key reaches the page).

import { VoiceFailure, parseRetryAfter } from "./failures.js";
import { parseJson } from "../common/websocket.js";

// POST /api/realtime/sessions → { conversation, client_secret, calls_url, socket_url, … }
export async function mintSession(apiUrl, csrfToken, body) {
  return postJson(apiUrl, csrfToken, body, (data) => data?.client_secret && data.calls_url && data.conversation);
}

// POST /api/realtime/calls with { sdp: offer, … } → { conversation, sdp: answer, socket_url, … }
export async function startServerCall(apiUrl, csrfToken, body) {
  return postJson(apiUrl, csrfToken, body, (data) => typeof data?.sdp === "string" && data.conversation && data.socket_url);
}

async function postJson(apiUrl, csrfToken, body, complete) {
  const response = await fetch(apiUrl, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken },
    body: JSON.stringify(body),
  }).catch(() => {
    throw new VoiceFailure("api-network");
  });
  const data = await response.json().catch(() => null);
  const { status } = response;
  if (!response.ok) {
    const { code, message, budget } = data?.error || {};
    throw new VoiceFailure("api", { status, code, message, budget, retryAfter: parseRetryAfter(response.headers.get("Retry-After")) });
  }
  if (!complete(data)) throw new VoiceFailure("api", { status, message: "The server's answer was incomplete." });
  return data;
}

// OpenAI names the call in the Location of its answer: /v1/realtime/calls/rtc_… (null if it
// is missing, or unreadable: a cross-origin page sees it only if OpenAI exposes the header).
export const CALL_ID = /^rtc_[A-Za-z0-9_-]{1,100}$/;
export function callIdFromLocation(location) {
  if (typeof location !== "string") return null;
  const id = location.split(/[?#]/)[0].replace(/\/+$/, "").split("/").pop();
  return CALL_ID.test(id) ? id : null;
}

export async function openMicrophone() {
  if (!navigator.mediaDevices) throw new VoiceFailure("mic", { name: "insecure" });
  try {
    return await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true } });
  } catch (error) {
    throw new VoiceFailure("mic", { name: error?.name });
  }
}

// One OpenAI session. onState: connected | unstable | failed | channel-closed. After connect,
// callId is OpenAI's id of the call when the answer named it (browser mode), else null.
export class RealtimeCall {
  constructor({ onEvent, onState, onRemoteStream }) {
    Object.assign(this, { onEvent, onState, onRemoteStream, closed: false, callId: null });
  }

  // exchange(offerSdp) → { answer, callId }: by default the offer goes to OpenAI with the key.
  async connect({ callsUrl, key, stream, timeoutMs = 15000, exchange = (sdp) => this.exchange(callsUrl, key, sdp) }) {
    const pc = (this.pc = new RTCPeerConnection());
    stream.getAudioTracks().forEach((track) => pc.addTrack(track, stream));
    pc.ontrack = (event) => this.onRemoteStream(event.streams[0] || new MediaStream([event.track]));
    pc.onconnectionstatechange = () => {
      const state = pc.connectionState;
      if (this.closed) return;
      if (state === "connected") this.onState("connected");
      else if (state === "disconnected") this.onState("unstable"); // often recovers by itself
      else if (state === "failed") {
        this.settle(new VoiceFailure("ice"));
        this.onState("failed");
      }
    };
    // Before the offer, so that the offer negotiates it.
    const channel = (this.channel = pc.createDataChannel("oai-events"));
    channel.onmessage = ({ data }) => {
      const event = parseJson(data);
      if (typeof event?.type === "string") this.onEvent(event);
    };
    channel.onclose = () => this.closed || this.onState("channel-closed");
    const opened = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new VoiceFailure("timeout")), timeoutMs);
      this.settle = (failure) => {
        clearTimeout(timer);
        failure ? reject(failure) : resolve();
      };
      channel.onopen = () => this.settle();
    });

    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    const { answer, callId = null } = await exchange(offer.sdp);
    if (this.closed) throw new VoiceFailure("cancelled");
    this.callId = callId;
    await pc.setRemoteDescription({ type: "answer", sdp: answer });
    await opened;
  }

  // A 201 carries the answer, and names the call in Location; an error is OpenAI's JSON, never an SDP.
  async exchange(callsUrl, key, sdp) {
    const headers = { Authorization: `Bearer ${key}`, "Content-Type": "application/sdp" };
    const response = await fetch(callsUrl, { method: "POST", body: sdp, headers }).catch(() => {
      throw new VoiceFailure("sdp-network", { origin: new URL(callsUrl, location.href).origin });
    });
    const body = await response.text();
    if (!response.ok) throw new VoiceFailure("sdp", { status: response.status, message: openaiMessage(body) });
    return { answer: body, callId: callIdFromLocation(response.headers.get("Location")) };
  }

  // No queue: nothing is sent before the session is live.
  send(events) {
    if (this.channel?.readyState === "open") events.forEach((event) => this.channel.send(JSON.stringify(event)));
  }

  close() {
    this.closed = true;
    this.settle?.(new VoiceFailure("cancelled"));
    this.channel?.close();
    this.pc?.close();
  }
}

function openaiMessage(body) {
  const error = parseJson(body)?.error;
  return error ? error.message || error.code || "" : body.trim().slice(0, 200);
}

// Client events. A turn detection change mid-session: only that field (the server's setting
// for the mode, from the page's config; null for push-to-talk).
export const sessionUpdate = (turnDetection) => ({
  type: "session.update", session: { type: "realtime", audio: { input: { turn_detection: turnDetection } } },
});

export const typedMessage = (text) => [
  { type: "conversation.item.create", item: { type: "message", role: "user", content: [{ type: "input_text", text }] } },
  { type: "response.create" },
];

// Push-to-talk: drop stray audio on press; answer on release.
export const pushToTalkPress = () => [{ type: "input_audio_buffer.clear" }];
export const pushToTalkRelease = () => [{ type: "input_audio_buffer.commit" }, { type: "response.create" }];

// Also drops the audio already queued for playback.
export const interruptReply = () => [{ type: "response.cancel" }, { type: "output_audio_buffer.clear" }];

// What can go wrong, and what the page says (node-tested): { title, message, retry: Start may
// work (the default), resume: Continue may work, … }.

import { budgetMessage } from "./budget.js";

export class VoiceFailure extends Error {
  name = "VoiceFailure";

  constructor(kind, details = {}) {
    super(details.message || kind);
    Object.assign(this, { kind, details });
  }
}

export function formatWait(seconds) {
  const s = Math.max(1, Math.ceil(Number(seconds) || 0));
  if (s < 90) return `${s} second${s === 1 ? "" : "s"}`;
  const minutes = Math.ceil(s / 60);
  return minutes < 90 ? `${minutes} minutes` : `${Math.ceil(minutes / 60)} hours`;
}

// Retry-After: delta-seconds or an HTTP date.
export function parseRetryAfter(value, now = Date.now()) {
  if (value == null || value === "") return null;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds);
  const date = Date.parse(value);
  return Number.isNaN(date) ? null : Math.max(0, Math.round((date - now) / 1000));
}

const AGAIN = "Press Start to try again.";
const START = "press Start again.";
const BLOCKED = ["Microphone blocked", `The browser did not allow this page to use your microphone. Allow microphone access for this site (the icon in the address bar), then ${START}`];
const ABSENT = ["No microphone found", `No microphone is connected to this device. Connect one (or enable it in your system settings) and ${START}`];
const MIC = {
  NotAllowedError: BLOCKED,
  SecurityError: BLOCKED,
  NotFoundError: ABSENT,
  OverconstrainedError: ABSENT,
  NotReadableError: ["Microphone unavailable", `The microphone is in use by another application or could not be opened. Close the other application and ${START}`],
  insecure: ["Microphone needs a secure page", "Browsers only allow the microphone on secure (HTTPS) pages. Open this site over HTTPS."],
};
const lost = (title, message) => () => ({ title, message: `${message} Press Continue to carry on this conversation in a new session.`, resume: true });

function apiFailure({ status, code, message, retryAfter, budget }) {
  if (status === 503 || code === "not_configured") {
    return { title: "Voice conversations are not set up on this server.", message: "It has no OpenAI API key (OPENAI_API_KEY), so no session can be started. Your history is still available.", retry: false };
  }
  if (code === "budget_exhausted") {
    return { title: "Today's voice budget is used", message: budgetMessage(message, budget), retryAfter };
  }
  if (status === 429) {
    // The server's message names the limit and how long to wait.
    const wait = retryAfter != null ? `Try again in ${formatWait(retryAfter)}.` : "Try again later.";
    return { title: "Too many sessions", message: message || `You have started too many sessions for now. ${wait}`, retryAfter };
  }
  // This conversation gets no more sessions: Start begins a new one.
  if (code === "session_limit_reached") return { title: "Session time limit reached", message, resume: false };
  if (status === 504 || code === "upstream_timeout") {
    return { title: "OpenAI did not answer", message: `OpenAI took too long to start a session. ${AGAIN}` };
  }
  if (status === 502 || code === "upstream_error") {
    // Our server's message already names OpenAI and passes its reason on.
    return { title: "Could not start a session", message: `${message || "OpenAI refused or failed to create a session."} Press Start to try again in a moment.` };
  }
  if (status === 401) return { title: "Signed out", message: "Your session has ended. Log in again to keep talking.", retry: false, login: true };
  if (status === 403) return { title: "Page out of date", message: `The page's security token is no longer valid. Reload the page and ${START}`, retry: false, reload: true };
  return { title: "Could not start", message: `${message || `The server answered with an error (HTTP ${status}).`} ${AGAIN}` };
}

const DESCRIBE = {
  mic: ({ name }) => {
    const [title, message] = MIC[name] || ["Microphone error", `The microphone could not be opened. Check your browser's permissions and ${START}`];
    return { title, message };
  },
  api: apiFailure,
  "api-network": () => ({ title: "Server unreachable", message: `The page could not reach the server. Check your connection. ${AGAIN}` }),
  sdp: ({ status, message }) => ({ title: "OpenAI refused the connection", message: `The voice connection could not be set up (HTTP ${status}): ${(message || "no reason given").replace(/\.$/, "")}. ${AGAIN}` }),
  "sdp-network": ({ origin }) => ({ title: "OpenAI unreachable", message: `The browser could not reach OpenAI${origin ? ` at ${origin}` : ""}. Check your connection, firewall or content blocker. ${AGAIN}` }),
  timeout: () => ({ title: "Connection timed out", message: `The voice connection to OpenAI did not open in time; your network may block WebRTC. ${AGAIN}` }),
  ice: () => ({ title: "Connection lost", message: "The audio connection to OpenAI was lost. Press Continue to reconnect and carry on this conversation.", resume: true }),
  "channel-closed": lost("Session closed", "OpenAI closed the session's event channel."),
  expired: lost("Session time limit reached", "OpenAI sessions last at most 60 minutes."),
  openai: ({ code, message }) => ({ title: "OpenAI reported an error", message: message || code || "Unknown error." }),
};

export function describeFailure(failure) {
  const describe = DESCRIBE[failure?.kind];
  const described = describe ? describe(failure.details || {}) : { title: "Something went wrong", message: failure?.message || `An unexpected error occurred. ${AGAIN}` };
  return { retry: true, ...described };
}

// OpenAI `error` events: most leave the session open and are no news.
const QUIET = new Set(["response_cancel_not_active", "conversation_already_has_active_response"]);

export function classifyOpenAIError(event) {
  const error = event?.error || {};
  if (error.code === "session_expired") return { action: "expired" };
  if (error.code === "input_audio_buffer_commit_empty") {
    return { action: "hint", message: "Nothing was recorded. Hold the Talk button (or the space bar) while you speak." };
  }
  return { action: QUIET.has(error.code) ? "ignore" : "notify", error };
}

// The session-length cap (config.sessionLimitSeconds, the server's REALTIME_MAX_SESSION_SECONDS):
// time left near it, and why a session ended there. The server hangs the call up at the cap and
// says so on the transcript socket (`call_ended`); the page's own timer ends the session after a
// grace (sessionGraceSeconds: 0 when no server can hang up), so the server's word comes first.

import { budgetMessage } from "./budget.js";

export const capWords = (s) => (s % 60 ? `${s}-second` : `${s / 60}-minute`);
export const capLength = (s) => (s % 60 ? `${s} seconds` : `${s / 60} minutes`);

// Per second while live: the time left, whether to show it, whether the page ends the session.
export function capState({ sessionLimitSeconds, warnBeforeSeconds, sessionGraceSeconds = 0 }, elapsedMs) {
  const leftMs = sessionLimitSeconds * 1000 - elapsedMs;
  return { leftMs, near: leftMs <= warnBeforeSeconds * 1000, over: leftMs <= -sessionGraceSeconds * 1000 };
}

// The `call_ended` frame the page makes itself when its timer ends the session.
export const capReached = (config) => ({ type: "call_ended", reason: "session_cap", message: `This session reached its ${capWords(config.sessionLimitSeconds)} limit.` });

// What the page says: a cap offers to continue; a spent budget does not (a new key is refused).
// The budget's time is told in the browser's clock (budget.js).
export function describeEnd({ reason, message, budget }) {
  if (reason === "budget") return { tone: "warning", title: "Today's voice budget is used", message: budgetMessage(message, budget), resume: false };
  return { tone: "info", title: "Session time limit reached", message: `${message} Continue this conversation in a new session, or press Stop.`, resume: true };
}

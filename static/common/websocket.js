// The pages' WebSockets (voice/socket.js, history/live.js): URLs, retries, close codes.

// 4401 signed out and 4404 not yours or gone are final; 4429 (too many sockets) and others retry.
export const closeMeaning = (code) => ({ 4401: "denied", 4404: "gone", 4429: "crowded" })[code] || "retry";
export const isFinal = (meaning) => meaning === "denied" || meaning === "gone";

export function socketUrl(path, { protocol, host } = location) {
  return /^wss?:/.test(path) ? path : `${protocol === "https:" ? "wss:" : "ws:"}//${host}${path}`;
}

// Exponential, with "equal jitter": tabs do not reconnect in lockstep.
export function backoffDelay(attempt, { min = 500, max = 15000, random = Math.random } = {}) {
  const step = Math.min(max, min * 2 ** attempt);
  return Math.round(step / 2 + random() * (step / 2));
}

// The next reconnect; `attempt = 0` once connected.
export class Retry {
  constructor(backoff = {}, timers = globalThis) {
    Object.assign(this, { backoff, timers, attempt: 0, at: 0 });
  }

  schedule(connect) {
    const delay = backoffDelay(this.attempt++, this.backoff);
    this.cancel();
    this.at = Date.now() + delay;
    this.timer = this.timers.setTimeout(connect, delay);
  }

  cancel() {
    this.timers.clearTimeout(this.timer);
  }
}

export function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

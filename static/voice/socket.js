// Delivers outboxes over /ws/conversations/<uuid>/. Each (re)connect waits for `ready` (what
// the server holds) and resends the rest in order: every frame is stored once. The id of the
// live call (browser mode) goes the same way: sent after `ready` until the server says `bound`
// (or refuses it for good). It is kept in memory only: a reload ends the call it names.

import { Retry, closeMeaning, isFinal, parseJson, socketUrl } from "../common/websocket.js";
import { Outbox, leftovers } from "./outbox.js";

export class TranscriptSocket {
  constructor(url, outbox, {
    WebSocket = globalThis.WebSocket, timers = globalThis, backoff = {}, readyTimeoutMs = 8000, pingIntervalMs = 20000,
    onStatus = () => {}, onFrameError = (message) => console.warn("Transcript frame refused", message), onCallEnded = () => {},
  } = {}) {
    Object.assign(this, { url, outbox, WebSocket, timers, readyTimeoutMs, pingIntervalMs, onStatus, onFrameError, onCallEnded });
    // closing: `end` sent
    Object.assign(this, { ws: null, isReady: false, stopped: false, closing: false, retry: new Retry(backoff, timers), state: "idle" });
  }

  start() {
    this.stopped = false;
    if (!this.ws) this.connect();
    return this;
  }

  push(event) {
    const frame = this.outbox.push(event);
    if (this.isReady) this.sendFrame(frame);
    this.report();
  }

  // The OpenAI call this page made for the conversation; only the latest matters (a replaced
  // call is over). Binding it again is harmless, so it is simply resent until confirmed.
  reportCall(callId) {
    this.call = callId;
    if (this.isReady) this.sendCall();
  }

  sendCall() {
    if (this.call) this.send({ type: "call", call_id: this.call });
  }

  sendFrame(frame) {
    this.send(frame);
    this.sentUpTo = Math.max(this.sentUpTo, frame.seq);
  }

  // After every pending frame; flagged in the outbox, so a reload still ends it.
  end() {
    this.outbox.markEnded();
    if (this.isReady) this.sendEnd();
    else this.start();
  }

  // Page hide: unsent frames go out even before `ready` (the server ignores seqs it has).
  flush() {
    if (this.ws?.readyState !== 1) return;
    for (const frame of this.outbox.pending()) if (frame.seq > this.sentUpTo) this.sendFrame(frame);
  }

  stop() {
    this.stopped = true;
    this.disconnect(1000);
    this.setState("closed");
  }

  connect() {
    this.clearTimers(); // a retry may be pending
    this.sentUpTo = 0;
    this.setState("connecting");
    let ws;
    try {
      ws = this.ws = new this.WebSocket(this.url);
    } catch {
      return this.scheduleReconnect("offline");
    }
    // Open but never `ready` (a stuck proxy or server) is as good as closed.
    ws.onopen = () => (this.readyTimer = this.timers.setTimeout(() => this.drop(), this.readyTimeoutMs));
    ws.onmessage = (message) => this.receive(message.data);
    ws.onclose = (event) => this.closed(event.code);
  }

  receive(data) {
    const message = parseJson(data);
    const { outbox } = this;
    switch (message?.type) {
      case "ready":
        this.timers.clearTimeout(this.readyTimer);
        this.isReady = true;
        this.retry.attempt = 0;
        outbox.ready(message.last_seq).forEach((frame) => this.sendFrame(frame));
        this.sendCall();
        this.pingTimer = this.timers.setInterval(() => this.send({ type: "ping" }), this.pingIntervalMs);
        this.setState("online");
        if (outbox.ended) this.sendEnd();
        break;
      case "ack":
        outbox.ack(message.seq);
        this.report();
        if (this.closing && outbox.finished) this.send({ type: "ping" });
        break;
      case "call":
        if (message.status === "bound" && message.call_id === this.call) this.call = null;
        break;
      case "error": // refused for good: kept, it would block the outbox forever
        if (message.code === "rate_limited") return this.throttled(message);
        if (message.code === "invalid_call" || (message.code === "call_taken" && message.call_id === this.call)) this.call = null;
        if (Number.isInteger(message.seq)) outbox.ack(message.seq);
        this.report();
        this.onFrameError(message);
        break;
      case "call_ended": // the server hung the call up (caps.js says why)
        this.onCallEnded(message);
        break;
      case "ended": // our server confirms `end`; the contract does not require it
      case "pong": // or a pong once all is acked: the best sign there is
        if (this.closing && outbox.finished) this.finish();
        break;
    }
  }

  // Not refused for good: the frame stays in the outbox and goes again, from the first refused
  // one (the server holds back the later ones until it has it), once the limit allows.
  throttled({ seq, retry_after: retryAfter }) {
    if (Number.isInteger(seq)) this.resendFrom = Math.min(this.resendFrom ?? seq, seq);
    if (this.resendTimer) return;
    const delay = 1000 * Math.max(1, Number(retryAfter) || 1);
    this.resendTimer = this.timers.setTimeout(() => {
      this.resendTimer = null;
      const from = this.resendFrom ?? Infinity;
      this.resendFrom = null;
      if (!this.isReady) return; // a reconnect resends everything anyway
      for (const frame of this.outbox.pending()) if (frame.seq >= from) this.sendFrame(frame);
      this.sendCall(); // refused, or dropped behind a refused frame; unconfirmed either way
      if (this.outbox.ended) this.sendEnd();
    }, delay);
  }

  sendEnd() {
    this.send({ type: "end" });
    this.closing = true;
    if (this.outbox.finished) this.send({ type: "ping" });
  }

  finish() {
    this.outbox.forget();
    this.stop();
    this.setState("finished");
  }

  send(payload) {
    if (this.ws?.readyState === 1) this.ws.send(JSON.stringify(payload)); // else a close follows
  }

  drop() {
    this.disconnect(4000);
    this.closed(1006);
  }

  disconnect(code) {
    const { ws } = this;
    this.ws = null;
    this.isReady = false;
    this.clearTimers();
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = null;
    if (code) ws.close(code);
  }

  closed(code) {
    this.disconnect();
    if (this.stopped) return;
    const meaning = closeMeaning(code);
    if (isFinal(meaning)) this.setState(meaning);
    else this.scheduleReconnect(meaning === "crowded" ? meaning : "offline");
  }

  // state: offline, or crowded (too many sockets open: other tabs)
  scheduleReconnect(state) {
    this.retry.schedule(() => this.connect());
    this.setState(state);
  }

  retryNow() {
    if (this.state === "offline" && !this.stopped) this.connect();
  }

  clearTimers() {
    this.retry.cancel();
    this.timers.clearTimeout(this.readyTimer);
    this.timers.clearInterval(this.pingTimer);
    this.timers.clearTimeout(this.resendTimer);
    this.resendTimer = this.resendFrom = null;
  }

  setState(state) {
    this.state = state;
    this.report();
  }

  report() {
    this.onStatus({ state: this.state, pending: this.outbox.size });
  }
}

const DONE = new Set(["finished", "closed"]);
const SAVED = new Set(["online", ...DONE]);
const RETRYING = new Set(["offline", "crowded"]);
const RANK = { idle: 0, finished: 1, closed: 1, online: 2, connecting: 3, offline: 4, crowded: 4, gone: 4, denied: 5 };

// Some privacy modes refuse localStorage: outboxes then live in memory.
function localStore() {
  try {
    return localStorage;
  } catch {
    return null;
  }
}

// All the page's transcript sockets, summed up for the save indicator.
export class Deliveries {
  constructor(onChange, onFrameError, onCallEnded) {
    Object.assign(this, { storage: localStore(), owner: tabId(), onChange, onFrameError, onCallEnded, sockets: new Map(), liveId: null });
  }

  open(conversationId, socketPath, recovering = false) {
    const known = this.sockets.get(conversationId);
    if (known && !DONE.has(known.state)) return Object.assign(known, { recovering: known.recovering && recovering });
    const outbox = new Outbox(this.storage, conversationId, { socketUrl: socketPath, owner: this.owner });
    outbox.persist(); // claims it for this tab
    const socket = new TranscriptSocket(socketUrl(socketPath), outbox, {
      onStatus: () => this.changed(socket), ...(this.onFrameError && { onFrameError: this.onFrameError }),
      onCallEnded: (message) => conversationId === this.liveId && this.onCallEnded?.(message),
    });
    socket.recovering = recovering;
    this.sockets.set(conversationId, socket);
    return socket.start();
  }

  recover() {
    for (const { conversationId, socketUrl } of leftovers(this.storage, { owner: this.owner })) {
      if (socketUrl) this.open(conversationId, socketUrl, true);
    }
  }

  changed(socket) {
    // A recovered, unended conversation needs its socket only until its outbox is empty.
    if (socket.recovering && socket.isReady && !socket.outbox.size && !socket.outbox.ended) socket.stop();
    this.onChange(this.summary());
  }

  // The worst state of those with frames, the live one, and those that can say "saved".
  summary() {
    let [pending, state, retryAt] = [0, "idle", Infinity];
    for (const [id, socket] of this.sockets) {
      if (!socket.outbox.size && id !== this.liveId && !SAVED.has(socket.state)) continue;
      pending += socket.outbox.size;
      if (RANK[socket.state] > RANK[state]) state = socket.state;
      if (RETRYING.has(socket.state)) retryAt = Math.min(retryAt, socket.retry.at);
    }
    return { pending, state, retryInMs: retryAt < Infinity ? Math.max(0, retryAt - Date.now()) : 0 };
  }

  flushAll() {
    this.sockets.forEach((socket) => socket.flush());
  }

  retryAll() {
    this.sockets.forEach((socket) => socket.retryNow());
  }

  // Tells other tabs that this one is still delivering.
  heartbeat() {
    this.sockets.forEach((socket) => DONE.has(socket.state) || socket.outbox.persist());
  }
}

// Survives reloads (sessionStorage): this tab's leftovers are its own.
function tabId() {
  const id = crypto.randomUUID?.() || String(Math.random()).slice(2);
  try {
    if (!sessionStorage.getItem("voice.tab")) sessionStorage.setItem("voice.tab", id);
    return sessionStorage.getItem("voice.tab");
  } catch {
    return id;
  }
}

// The page's transcript sockets: the live conversation's, and those still delivering an ended
// one or an earlier page's leftovers; summed up for the save indicator.

import { Outbox, leftovers } from "./outbox.js";
import { TranscriptSocket, absoluteSocketUrl } from "./socket.js";

const DONE = new Set(["finished", "closed"]);
const SAVED = new Set(["online", ...DONE]);
const RANK = { idle: 0, finished: 1, closed: 1, online: 2, connecting: 3, offline: 4, gone: 4, denied: 5 };

// Some privacy modes refuse localStorage: outboxes then live in memory.
function localStore() {
  try {
    return localStorage;
  } catch {
    return null;
  }
}

export class Deliveries {
  constructor({ owner, onChange }) {
    Object.assign(this, { storage: localStore(), owner, onChange, sockets: new Map(), liveId: null });
  }

  open(conversationId, socketPath, recovering = false) {
    const known = this.sockets.get(conversationId);
    if (known && !DONE.has(known.state)) return Object.assign(known, { recovering: known.recovering && recovering });
    const outbox = new Outbox(this.storage, conversationId, { socketUrl: socketPath, owner: this.owner });
    outbox.persist(); // claims it for this tab
    const socket = new TranscriptSocket(absoluteSocketUrl(socketPath, location), outbox, { onStatus: () => this.changed(socket) });
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

  // Total waiting, and the most worrying state among the sockets with something to deliver,
  // the live one, and those that can say "saved".
  summary() {
    let [pending, state, retryAt] = [0, "idle", Infinity];
    for (const [id, socket] of this.sockets) {
      if (!socket.outbox.size && id !== this.liveId && !SAVED.has(socket.state)) continue;
      pending += socket.outbox.size;
      if (RANK[socket.state] > RANK[state]) state = socket.state;
      if (socket.state === "offline") retryAt = Math.min(retryAt, socket.retryAt);
    }
    return { pending, state, retryInMs: retryAt < Infinity ? Math.max(0, retryAt - Date.now()) : 0 };
  }

  flushAll() {
    this.sockets.forEach((socket) => socket.flush());
  }

  retryAll() {
    this.sockets.forEach((socket) => socket.retryNow());
  }

  // Tells other tabs (leftovers) that this one is still delivering.
  heartbeat() {
    this.sockets.forEach((socket) => DONE.has(socket.state) || socket.outbox.persist());
  }
}

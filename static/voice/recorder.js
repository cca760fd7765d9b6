// Recording a session (RECORDINGS; docs/api.md, "Recordings"): the microphone and the assistant's
// voice mixed with Web Audio into one stream, recorded by MediaRecorder in chunks of chunkMs,
// each uploaded as it is produced. A chunk waits in IndexedDB until the server acknowledges it,
// so a reload or a network failure loses at most the chunk being recorded: the rest is sent
// again (a resend changes nothing on the server). Audio never passes through our server live.

// What the server accepts (audio/webm, audio/ogg, audio/mp4), best first.
export const MIME_TYPES = ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/webm", "audio/mp4"];

export const pickMimeType = (isSupported) => MIME_TYPES.find((type) => isSupported(type)) || "";

// "/api/conversations/{conversation}/recordings/{segment}/chunks/{index}" → a path.
export const fillUrl = (template, values) => template.replace(/\{(\w+)\}/g, (_, name) => encodeURIComponent(values[name]));

export const recordingKey = ({ conversation, segment }) => `${conversation}/${segment}`;
export const chunkKey = (chunk) => `${recordingKey(chunk)}/${String(chunk.index).padStart(6, "0")}`;

// The answer to one chunk's PUT → what to do: ack (stored, or already stored), rewind (the
// server expects an earlier chunk first), retry (later: offline, signed out, overloaded), or
// give-up (this recording can never take this chunk: stop recording it and say why).
export function verdict(status, body) {
  if (status === 200 || status === 201) return { action: "ack" };
  const { code = "", message = "" } = body?.error || {};
  if (status === 409 && code === "out_of_order" && Number.isInteger(body?.expected)) return { action: "rewind", expected: body.expected };
  if (status === 0 || status === 401 || status === 408 || status === 429 || status >= 500) return { action: "retry" };
  return { action: "give-up", code: code || `http_${status}`, message: message || `The server refused the recording (HTTP ${status}).` };
}

// Chunks in order, one request at a time (the server takes each recording's chunks in order).
// store: { put(chunk), delete(key), list() } (IndexedDB in the page, a Map in the tests);
// send(chunk) → { status, body } (status 0: no answer); onGiveUp(chunk, verdict); onAck(chunk, body).
export class ChunkQueue {
  constructor({ store, send, onGiveUp = () => {}, onAck = () => {}, wait = (ms) => new Promise((r) => setTimeout(r, ms)), backoffMs = [1000, 2000, 5000, 10000, 30000] }) {
    Object.assign(this, { store, send, onGiveUp, onAck, wait, backoffMs, pending: [], busy: null, failures: 0, abandoned: new Set(), adding: Promise.resolve() });
  }

  get size() {
    return this.pending.length;
  }

  // Stored first (a reload finds it), then queued; one after the other, so that a chunk is
  // never queued before the one it follows.
  add(chunk) {
    chunk.storedAt ??= Date.now();
    this.adding = this.adding.then(async () => {
      if (this.abandoned.has(recordingKey(chunk))) return;
      await this.store.put(chunk).catch(() => {}); // no storage: sent from memory all the same
      this.enqueue([chunk]);
    });
    return this.adding;
  }

  // What an earlier page left unsent. Another open tab may be sending some of them too: a
  // resend changes nothing on the server, and each tab sends in order.
  async recover() {
    await this.enqueue(await this.store.list().catch(() => []));
  }

  enqueue(chunks) {
    const known = new Set(this.pending.map(chunkKey));
    this.pending.push(...chunks.filter((chunk) => !known.has(chunkKey(chunk))));
    // Recordings in the order they were first stored, each one's chunks by index.
    const first = new Map();
    this.pending.forEach((chunk) => first.set(recordingKey(chunk), Math.min(first.get(recordingKey(chunk)) ?? Infinity, chunk.storedAt || 0)));
    this.pending.sort((a, b) => first.get(recordingKey(a)) - first.get(recordingKey(b)) || recordingKey(a).localeCompare(recordingKey(b)) || a.index - b.index);
    return this.pump();
  }

  // Resolves when the queue is empty (or waiting to retry: `idle` tells which).
  pump() {
    this.busy ||= this.drain().finally(() => (this.busy = null));
    return this.busy;
  }

  async drain() {
    while (this.pending.length) {
      const chunk = this.pending[0];
      let answer;
      try {
        answer = await this.send(chunk);
      } catch {
        answer = { status: 0, body: null };
      }
      const decided = verdict(answer.status, answer.body);
      if (decided.action === "retry") {
        await this.wait(this.backoffMs[Math.min(this.failures++, this.backoffMs.length - 1)]);
        continue;
      }
      this.failures = 0;
      const expected = this.pending.some((c) => recordingKey(c) === recordingKey(chunk) && c.index === decided.expected);
      if (decided.action === "ack") {
        // By identity: chunks added meanwhile may have been sorted before it.
        this.pending = this.pending.filter((c) => c !== chunk);
        await this.store.delete(chunkKey(chunk)).catch(() => {});
        this.onAck(chunk, answer.body);
      } else if (decided.action === "rewind" && expected) {
        this.enqueue([]); // sorted again: the one the server expects goes first
      } else {
        const lost = { code: "chunk_missing", message: "A part of the recording was lost before it could be uploaded." };
        await this.abandon(chunk, decided.action === "rewind" ? lost : decided);
      }
    }
  }

  // Nothing more of this recording can be stored: forget all its chunks.
  async abandon(chunk, reason) {
    const key = recordingKey(chunk);
    this.abandoned.add(key);
    const dropped = this.pending.filter((c) => recordingKey(c) === key);
    this.pending = this.pending.filter((c) => recordingKey(c) !== key);
    await Promise.all(dropped.map((c) => this.store.delete(chunkKey(c)).catch(() => {})));
    this.onGiveUp(chunk, reason);
  }
}

// --- in the page --------------------------------------------------------------------------------

const DB = "voice-recordings";
const STORE = "chunks";

// Chunks by chunkKey in IndexedDB (the blob itself: a reload finds the bytes). Without IndexedDB
// (some private modes), in memory: still uploaded, only not across a reload.
export function chunkStore() {
  const memory = new Map();
  const opened = new Promise((resolve) => {
    try {
      const request = indexedDB.open(DB, 1);
      request.onupgradeneeded = () => request.result.createObjectStore(STORE);
      request.onsuccess = () => resolve(request.result);
      request.onerror = request.onblocked = () => resolve(null);
    } catch {
      resolve(null);
    }
  });
  const run = (mode, work) => opened.then((db) => new Promise((resolve, reject) => {
    if (!db) return resolve(work(null));
    const tx = db.transaction(STORE, mode);
    const request = work(tx.objectStore(STORE));
    tx.oncomplete = () => resolve(request?.result);
    tx.onerror = tx.onabort = () => reject(tx.error);
  }));
  return {
    put: (chunk) => run("readwrite", (store) => (store ? store.put(chunk, chunkKey(chunk)) : memory.set(chunkKey(chunk), chunk))),
    delete: (key) => run("readwrite", (store) => (store ? store.delete(key) : memory.delete(key))),
    list: () => run("readonly", (store) => (store ? store.getAll() : null)).then((all) => all || [...memory.values()]),
  };
}

export function uploader(csrfToken, { onGiveUp, onAck } = {}) {
  const send = async (chunk) => {
    const response = await fetch(chunk.url, {
      method: "PUT",
      body: chunk.blob,
      credentials: "same-origin",
      headers: { "Content-Type": chunk.type, "X-CSRFToken": csrfToken, "X-Recording-Duration-Ms": String(chunk.durationMs) },
    });
    return { status: response.status, body: await response.json().catch(() => null) };
  };
  return new ChunkQueue({ store: chunkStore(), send, onGiveUp, onAck });
}

// One session's recording: start() at go-live, stop() when the call ends. The assistant's
// stream may arrive before start (passed in streams) or after it (add).
export class SessionRecorder {
  constructor({ queue, chunkMs, uploadUrl, onState = () => {} }) {
    Object.assign(this, { queue, chunkMs, uploadUrl, onState, current: null });
  }

  get recording() {
    return Boolean(this.current);
  }

  start(context, { conversation, segment, streams }) {
    this.stop();
    const mimeType = pickMimeType((type) => MediaRecorder.isTypeSupported(type));
    const mix = context.createMediaStreamDestination();
    mix.channelCount = 1; // speech: mono halves the bytes
    const recorder = new MediaRecorder(mix.stream, { mimeType, audioBitsPerSecond: 32000 });
    const current = (this.current = { context, mix, recorder, sources: [], key: recordingKey({ conversation, segment }) });
    streams.forEach((stream) => this.add(stream));
    const began = performance.now();
    let index = 0;
    recorder.ondataavailable = ({ data }) => {
      if (!data.size) return;
      const i = index++;
      const url = fillUrl(this.uploadUrl, { conversation, segment, index: i });
      // The duration of the recording up to the end of this chunk, as the header wants it.
      const durationMs = Math.round(performance.now() - began);
      this.queue.add({ conversation, segment, index: i, blob: data, type: recorder.mimeType || mimeType, durationMs, url });
    };
    recorder.onerror = () => this.current === current && this.stop("The browser stopped recording.");
    // The last chunk comes first (dataavailable, then stop); then the mix can go.
    recorder.onstop = () => current.sources.forEach((source) => source.disconnect());
    recorder.start(this.chunkMs);
    this.onState({ recording: true });
  }

  // A stream into the mix (the microphone at start, the assistant's whenever it arrives).
  add(stream) {
    const { current } = this;
    if (!current || !stream?.getAudioTracks().length) return;
    const source = current.context.createMediaStreamSource(stream);
    source.connect(current.mix);
    current.sources.push(source);
  }

  stop(problem = "") {
    const { current } = this;
    this.current = null;
    if (current && current.recorder.state !== "inactive") current.recorder.stop();
    if (current || problem) this.onState({ recording: false, problem });
  }

  // The server gave up on recording `key`: stop it if it is this one.
  refused(key, message) {
    if (this.current?.key === key) this.stop(message);
  }
}

import assert from "node:assert/strict";
import { test } from "node:test";

import { ChunkQueue, chunkKey, fillUrl, pickMimeType, verdict } from "../../static/voice/recorder.js";

// A server that keeps chunks per recording, in order, as the upload API does (docs/api.md).
class FakeServer {
  constructor() {
    this.held = new Map(); // recording → [bytes of chunk 0, 1, …]
    this.requests = [];
    this.down = false;
    this.refuse = null; // { status, code, message } for every request
  }

  send = async (chunk) => {
    this.requests.push(chunkKey(chunk));
    if (this.down) throw new TypeError("Failed to fetch");
    if (this.refuse) return { status: this.refuse.status, body: { error: { code: this.refuse.code, message: this.refuse.message } } };
    const key = `${chunk.conversation}/${chunk.segment}`;
    const chunks = this.held.get(key) || [];
    this.held.set(key, chunks);
    if (chunk.index < chunks.length) {
      return chunks[chunk.index] === chunk.blob ? { status: 200, body: {} } : { status: 409, body: { error: { code: "chunk_conflict" } } };
    }
    if (chunk.index > chunks.length) return { status: 409, body: { error: { code: "out_of_order", message: "" }, expected: chunks.length } };
    chunks.push(chunk.blob);
    return { status: 201, body: { recording: { chunks: chunks.length } } };
  };
}

class MemoryStore {
  map = new Map();
  put = async (chunk) => void this.map.set(chunkKey(chunk), chunk);
  delete = async (key) => void this.map.delete(key);
  list = async () => [...this.map.values()];
}

const chunk = (index, { conversation = "c1", segment = 1, storedAt = 1 } = {}) => ({ conversation, segment, index, blob: `bytes-${conversation}-${segment}-${index}`, storedAt });
const noWait = async () => {};

test("chunks are stored, uploaded in order, and forgotten once acknowledged", async () => {
  const server = new FakeServer();
  const store = new MemoryStore();
  const acked = [];
  const queue = new ChunkQueue({ store, send: server.send, onAck: (c) => acked.push(c.index), wait: noWait });
  await Promise.all([queue.add(chunk(0)), queue.add(chunk(1)), queue.add(chunk(2))]);
  await queue.pump();
  assert.deepEqual(server.held.get("c1/1"), ["bytes-c1-1-0", "bytes-c1-1-1", "bytes-c1-1-2"]);
  assert.deepEqual(acked, [0, 1, 2]);
  assert.equal(store.map.size, 0);
  assert.equal(queue.size, 0);
});

test("a network failure keeps the chunks and sends them again when the server answers", async () => {
  const server = new FakeServer();
  const store = new MemoryStore();
  let waits = 0;
  const queue = new ChunkQueue({
    store, send: server.send,
    wait: async () => { if (++waits === 3) server.down = false; },
  });
  server.down = true;
  await queue.add(chunk(0));
  await queue.add(chunk(1));
  await queue.pump();
  assert.equal(waits, 3);
  assert.deepEqual(server.held.get("c1/1"), ["bytes-c1-1-0", "bytes-c1-1-1"]);
  assert.equal(store.map.size, 0);
});

test("after a reload, what is stored is sent again; a chunk the server already has changes nothing", async () => {
  const server = new FakeServer();
  const store = new MemoryStore();
  // The first page: chunk 0 acknowledged, chunk 1 sent but its answer lost, chunk 2 never sent.
  server.held.set("c1/1", ["bytes-c1-1-0", "bytes-c1-1-1"]);
  await store.put(chunk(1));
  await store.put(chunk(2));
  // The reloaded page.
  const queue = new ChunkQueue({ store, send: server.send, wait: noWait });
  await queue.recover();
  await queue.pump();
  assert.deepEqual(server.held.get("c1/1"), ["bytes-c1-1-0", "bytes-c1-1-1", "bytes-c1-1-2"]);
  assert.deepEqual(server.requests, ["c1/1/000001", "c1/1/000002"]);
  assert.equal(store.map.size, 0);
});

test("out of order: the queue resends from the chunk the server expects", async () => {
  const server = new FakeServer();
  const store = new MemoryStore();
  let release;
  const held = new Promise((resolve) => (release = resolve));
  // Chunk 2 is on its way when chunk 1 (a recovered page's, say) joins the queue.
  const send = async (chunk) => {
    if (chunk.index === 2 && server.requests.length === 1) {
      const answer = server.send(chunk);
      await held;
      return answer;
    }
    return server.send(chunk);
  };
  const queue = new ChunkQueue({ store, send, wait: noWait });
  await queue.add(chunk(0));
  await queue.pump();
  await queue.add(chunk(2));
  await queue.add(chunk(1));
  release();
  await queue.pump();
  assert.deepEqual(server.held.get("c1/1"), ["bytes-c1-1-0", "bytes-c1-1-1", "bytes-c1-1-2"]);
  assert.deepEqual(server.requests, ["c1/1/000000", "c1/1/000002", "c1/1/000001", "c1/1/000002"]);
});

test("a chunk the server expects but nobody kept: the recording is given up, others go on", async () => {
  const server = new FakeServer();
  const store = new MemoryStore();
  const given = [];
  const queue = new ChunkQueue({ store, send: server.send, wait: noWait, onGiveUp: (c, reason) => given.push([c.conversation, reason.code]) });
  await store.put(chunk(3)); // chunks 0–2 are gone (storage cleared)
  await store.put(chunk(0, { conversation: "c2", storedAt: 2 }));
  await queue.recover();
  await queue.pump();
  assert.deepEqual(given, [["c1", "chunk_missing"]]);
  assert.deepEqual(server.held.get("c2/1"), ["bytes-c2-1-0"]);
  assert.equal(store.map.size, 0);
  await queue.add(chunk(4)); // a given-up recording takes nothing more
  assert.equal(queue.size, 0);
});

test("a refusal (too large, not audio, closed) gives the recording up with the server's words", async () => {
  for (const [status, code] of [[413, "recording_too_large"], [415, "not_audio"], [409, "conversation_closed"], [403, "recordings_disabled"], [404, "not_found"]]) {
    const server = new FakeServer();
    const store = new MemoryStore();
    const given = [];
    const queue = new ChunkQueue({ store, send: server.send, wait: noWait, onGiveUp: (c, reason) => given.push([c.index, reason.code, reason.message]) });
    server.refuse = { status, code, message: `Refused: ${code}.` };
    await queue.add(chunk(0));
    await queue.add(chunk(1));
    await queue.pump();
    assert.deepEqual(given, [[0, code, `Refused: ${code}.`]], code);
    assert.equal(store.map.size, 0);
    assert.deepEqual(server.requests, ["c1/1/000000"]); // not one request per chunk
  }
});

test("verdicts", () => {
  assert.deepEqual(verdict(201, {}), { action: "ack" });
  assert.deepEqual(verdict(200, {}), { action: "ack" });
  assert.deepEqual(verdict(409, { error: { code: "out_of_order" }, expected: 3 }), { action: "rewind", expected: 3 });
  for (const status of [0, 401, 429, 500, 502, 503]) assert.equal(verdict(status, null).action, "retry", String(status));
  assert.deepEqual(verdict(409, { error: { code: "chunk_conflict", message: "Different bytes." } }), { action: "give-up", code: "chunk_conflict", message: "Different bytes." });
  assert.equal(verdict(400, null).message, "The server refused the recording (HTTP 400).");
});

test("the recorder's type is the first the browser supports, and URLs are filled in", () => {
  assert.equal(pickMimeType((t) => t.startsWith("audio/ogg")), "audio/ogg;codecs=opus");
  assert.equal(pickMimeType(() => false), "");
  const template = "/api/conversations/{conversation}/recordings/{segment}/chunks/{index}";
  assert.equal(fillUrl(template, { conversation: "ab-1", segment: 2, index: 0 }), "/api/conversations/ab-1/recordings/2/chunks/0");
});

test("a chunk is never queued before the one it follows, however slow storing it is", async () => {
  const server = new FakeServer();
  const store = new MemoryStore();
  const put = store.put;
  store.put = async (c) => {
    if (c.index === 0) await new Promise((resolve) => setTimeout(resolve, 20));
    return put(c);
  };
  const queue = new ChunkQueue({ store, send: server.send, wait: noWait });
  await Promise.all([queue.add(chunk(0)), queue.add(chunk(1)), queue.add(chunk(2))]);
  await queue.pump();
  assert.deepEqual(server.requests, ["c1/1/000000", "c1/1/000001", "c1/1/000002"]);
});

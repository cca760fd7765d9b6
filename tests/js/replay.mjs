// Runs event streams through the page's TranscriptModel, for tests/test_reducer_parity.py.
// stdin: a JSON list of streams (each a list of OpenAI server events, all of them: the page sees
// the deltas too). stdout: per stream {"lines": [...], "conflicts": n}, each line in the server's
// field names. Not a test file itself (node --test runs *.test.mjs only).

import { TranscriptModel } from "../../static/voice/transcript.js";

let input = "";
for await (const chunk of process.stdin) input += chunk;

const results = JSON.parse(input).map((events) => {
  const model = new TranscriptModel();
  for (const event of events) model.apply(event);
  const lines = model.lines.map((line) => ({
    item_id: line.id, role: line.role, kind: line.kind,
    status: line.status === "live" ? "pending" : line.status, // the page's name for an open reply
    text: line.text, error: line.error, response_id: line.responseId,
  }));
  return { lines, conflicts: model.conflicts };
});
process.stdout.write(JSON.stringify(results));

// The voice page's budget: the refusal in words with the browser's local time, and the meter.
import assert from "node:assert/strict";
import { test } from "node:test";

import { BudgetMeter, budgetMessage, localTime } from "../../static/voice/budget.js";
import { describeFailure, VoiceFailure } from "../../static/voice/failures.js";

process.env.TZ = "Europe/Paris"; // UTC+1 in January
const AT = Date.UTC(2026, 0, 15, 13, 19, 30) / 1000; // 13:19:30 UTC = 14:19:30 in Paris
const BUDGET = { limit_usd: "5.00", spent_usd: "5.00", unverified_usd: "0.00", held_usd: "0.00", frees_at: AT };

test("the time is the browser's, rounded up to the minute", () => {
  assert.equal(localTime(AT), "14:20");
  assert.equal(localTime(AT - 30), "14:19");
});

test("the server's refusal, with the local time in place of UTC", () => {
  const message = "You have used today's voice budget ($5.00). It frees up at 13:20 UTC.";
  assert.equal(budgetMessage(message, BUDGET), "You have used today's voice budget ($5.00). It frees up at 14:20.");
  assert.equal(budgetMessage("", BUDGET), "You have used today's voice budget ($5.00). It frees up at 14:20.");
});

test("a 429 budget_exhausted is described in words, never as a code", () => {
  const failure = new VoiceFailure("api", {
    status: 429, code: "budget_exhausted", retryAfter: 3600, budget: BUDGET,
    message: "You have used today's voice budget ($5.00). It frees up at 13:20 UTC.",
  });
  const described = describeFailure(failure);
  assert.equal(described.title, "Today's voice budget is used");
  assert.equal(described.message, "You have used today's voice budget ($5.00). It frees up at 14:20.");
  assert.equal(described.retryAfter, 3600);
  assert.doesNotMatch(JSON.stringify(described), /budget_exhausted|429/);
});

function fakeMeter() {
  const meter = {}, label = { textContent: "" };
  return { hidden: true, meter, label, querySelector: (selector) => (selector === "meter" ? meter : label) };
}

test("the meter shows the spend against the budget, and hides without a budget", () => {
  const element = fakeMeter();
  const view = new BudgetMeter(element, "/api/realtime/budget");
  view.show({ ...BUDGET, spent_usd: "1.25", unverified_usd: "0.10" });
  assert.equal(element.hidden, false);
  assert.equal(element.meter.value, 1.25);
  assert.equal(element.meter.max, 5);
  assert.equal(element.label.textContent, "Voice budget today: $1.25 of $5.00");
  assert.match(element.title, /\$0\.10 of it as reported by this browser/);
  view.show({ ...BUDGET, limit_usd: null });
  assert.equal(element.hidden, true);
});

test("refresh asks the server and shows its answer", async () => {
  const element = fakeMeter();
  const realFetch = globalThis.fetch;
  globalThis.fetch = async (url) => new Response(JSON.stringify({ budget: { ...BUDGET, spent_usd: "2.00" } }), { status: 200 });
  try {
    await new BudgetMeter(element, "/api/realtime/budget").refresh();
  } finally {
    globalThis.fetch = realFetch;
  }
  assert.equal(element.label.textContent, "Voice budget today: $2.00 of $5.00");
});

test("a call ended for the budget tells the time in the browser's clock too", async () => {
  const { describeEnd } = await import("../../static/voice/caps.js");
  const end = describeEnd({ type: "call_ended", reason: "budget", budget: BUDGET,
    message: "You have used today's voice budget ($5.00). The call was ended. It frees up at 13:20 UTC." });
  assert.equal(end.message, "You have used today's voice budget ($5.00). The call was ended. It frees up at 14:20.");
  assert.equal(end.resume, false);
});

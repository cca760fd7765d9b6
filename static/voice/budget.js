// The day's voice budget: a small meter of the spend over the last 24 hours against the budget
// (hidden without one), and the words of a refusal (node-tested). `budget` is the server's
// { limit_usd, spent_usd, unverified_usd, held_usd, frees_at } (conversations/budget.py as_json).

// "14:20" in this browser's time zone, rounded up to the minute (never too early).
export function localTime(epochSeconds) {
  const minute = Math.ceil(epochSeconds / 60) * 60;
  return new Date(minute * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
}

// The server's refusal in words, its time ("14:20 UTC") told in this browser's time zone instead.
export function budgetMessage(message, budget) {
  const when = budget?.frees_at ? localTime(budget.frees_at) : null;
  if (!message) return `You have used today's voice budget ($${budget?.limit_usd}).${when ? ` It frees up at ${when}.` : ""}`;
  return when ? message.replace(/\b\d{2}:\d{2} UTC\b/, when) : message;
}

export class BudgetMeter {
  constructor(element, url) {
    Object.assign(this, { element, url, timer: null });
  }

  show(budget) {
    const { element } = this;
    if (!element || !budget) return;
    const limit = Number(budget.limit_usd);
    element.hidden = !(limit > 0);
    if (element.hidden) return;
    const spent = Number(budget.spent_usd) || 0;
    const meter = element.querySelector("meter");
    Object.assign(meter, { max: limit, value: Math.min(spent, limit), low: limit * 0.8, high: limit * 0.8, optimum: 0 });
    element.querySelector("span").textContent = `Voice budget today: $${budget.spent_usd} of $${budget.limit_usd}`;
    const unverified = Number(budget.unverified_usd) > 0 ? `; $${budget.unverified_usd} of it as reported by this browser` : "";
    element.title = `Your voice spend over the last 24 hours, at list prices${unverified}`;
  }

  // Spend is recorded as the transcript reaches the server: ask a moment after the event.
  refreshSoon(delayMs = 1500) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(), delayMs);
  }

  async refresh() {
    if (!this.url) return;
    try {
      const response = await fetch(this.url, { headers: { Accept: "application/json" } });
      if (response.ok) this.show((await response.json()).budget);
    } catch {
      // The meter is a courtesy: it waits for the next refresh.
    }
  }
}

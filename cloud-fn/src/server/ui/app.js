// The cloud side's status page (after /ui/common.js): agents, the last day's questions by
// outcome, usage and cost, the last runs and the newest questions, all from /status.
"use strict";

const { $, set, ago, duration, count, percent, row, fill } = NotionLlm;

function items(id, entries) {
  $(id).replaceChildren(...entries.map((text) => {
    const item = document.createElement("li");
    item.textContent = text;
    return item;
  }));
}

const money = (cost) => (cost === null || cost === undefined ? "–" : "$" + cost.toFixed(cost < 1 ? 4 : 2));
const usage = (totals) => count(totals.answers, "answer") + ", " + count(totals.prompt_tokens + totals.completion_tokens, "token")
  + ", " + money(totals.cost);

// The question, linked to its Notion page (a navigation: nothing is fetched from Notion); a
// question asked in a comment has no page of its own.
function questionCell(job) {
  if (job.page_id.startsWith("comment:")) return job.question || "a comment";
  const link = document.createElement("a");
  link.href = "https://www.notion.so/" + job.page_id.replace(/-/g, "");
  link.target = "_blank";
  link.rel = "noopener noreferrer";
  link.textContent = job.question || job.page_id;
  if (job.generation > 1) link.title = "asked " + job.generation + " times";
  return link;
}

function showStatus(status) {
  const agent = status.agent;
  set("live-agents", String(agent.live_agents));
  set("link-kind", agent.kind);
  items("agents", agent.agents.map((one) =>
    (one.agent_id || "(no hello yet)") + (one.version ? " " + one.version : "") + " · seen " + ago(Date.now() / 1000 - one.seen_secs_ago)));

  const day = status.last_day;
  set("day-answers", day ? count(day.answers, "answer") : "–");
  set("fallback-ratio", day ? percent(day.fallback_ratio) : "–");
  items("day-modes", day ? Object.entries(day.by_status_and_mode).flatMap(([jobStatus, modes]) =>
    Object.entries(modes).map(([mode, n]) => jobStatus.replace("_", " ") + " · " + mode + ": " + n)) : []);

  const jobs = status.jobs.error ? [["unreadable", status.jobs.error]] : Object.entries(status.jobs);
  items("by-status", jobs.length ? jobs.map(([name, n]) => name.replace("_", " ") + ": " + n) : ["none yet"]);
  set("store", status.store);
  set("notion-requests", status.notion_requests.toLocaleString());

  set("month-cost", status.usage ? money(status.usage.this_month.cost) : "–");
  set("month-tokens", status.usage
    ? count(status.usage.this_month.prompt_tokens + status.usage.this_month.completion_tokens, "token") + " in "
      + count(status.usage.this_month.answers, "answer")
    : "–");
  set("today-usage", status.usage ? usage(status.usage.today) : "–");

  const feedback = status.feedback;
  const votes = feedback ? Object.values(feedback.by_mode) : [];
  const helpful = votes.reduce((sum, v) => sum + v.helpful, 0);
  const marked = votes.reduce((sum, v) => sum + v.helpful + v.unhelpful, 0);
  set("helpful-ratio", marked ? percent(helpful / marked) + " of " + marked : "no marks yet");
  items("helpful-by", feedback ? [
    ...Object.entries(feedback.by_mode).map(([mode, v]) => mode + ": " + percent(v.ratio) + " of " + (v.helpful + v.unhelpful)),
    ...Object.entries(feedback.by_model).map(([model, v]) => model + ": " + percent(v.ratio) + " of " + (v.helpful + v.unhelpful)),
  ] : []);
  fill("unhelpful", (feedback ? feedback.unhelpful : []).map((job) => row([questionCell(job), job.mode || "–",
    job.model || "–", job.sources.length ? job.sources.join(", ") : "none (nothing matched)"])), 4,
  "none marked unhelpful (add a Helpful select or checkbox to the questions database)");

  set("last-error", status.last_error ? "Last failed run: " + status.last_error : "");
  set("running", status.running ? "a run is in progress" : "");
  fill("runs", status.runs.map((run) => row([ago(run.at), String(run.found), String(run.answered),
    String(run.answered_offline), String(run.failed), String(run.retrying),
    run.error ? "failed: " + run.error : duration(run.seconds)])), 7, "no run has found a question yet");
  fill("questions", status.recent_questions.map((job) => row([questionCell(job),
    job.status.replace("_", " ") + (job.error && job.status !== "answered" ? " (" + job.error + ")" : ""),
    job.mode || "–", job.finished_at ? ago(job.finished_at) : "working…", job.model || "–",
    job.tokens === null ? "–" : job.tokens.toLocaleString(), money(job.cost)])), 7, "no questions yet");
}

NotionLlm.start(async (call) => showStatus(await call("/status")), 10000);

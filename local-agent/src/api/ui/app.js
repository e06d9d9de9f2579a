// The agent's status page (after /ui/common.js): the index, the Notion sync, the tunnel, the
// request figures and the last queries from /stats, and a search box on /search.
"use strict";

const { $, set, ago, ms, count, row, fill } = NotionLlm;

function showStats(stats) {
  set("documents", stats.index.documents.toLocaleString());
  set("chunks", stats.index.chunks.toLocaleString());
  set("generation", String(stats.index.generation));
  set("indexed-at", ago(stats.index.indexed_at));
  $("sources").replaceChildren(...stats.index.folders.map((folder) => {
    const item = document.createElement("li");
    item.textContent = folder;
    return item;
  }));
  const sync = stats.notion_sync;
  set("notion-sync", sync
    ? ago(sync.at) + ": " + count(sync.listed, "page") + " listed, " + sync.added + " added, "
      + sync.updated + " updated, " + sync.removed + " removed"
    : "never synced (no Notion database, or not yet)");
  const tunnel = stats.tunnel;
  set("tunnel-state", tunnel ? tunnel.state : "no cloud configured");
  set("heartbeat", tunnel ? ago(tunnel.last_heartbeat) : "–");
  set("tunnel-error", tunnel && tunnel.last_error && !tunnel.connected ? tunnel.last_error : "");
  const activity = stats.activity;
  set("rate", activity.per_minute.toFixed(1));
  set("total", String(stats.requests.total));
  set("errors", String(stats.requests.errors));
  set("p50", ms(activity.latency_ms.p50));
  set("p95", ms(activity.latency_ms.p95));
  set("p99", ms(activity.latency_ms.p99));
  set("model", stats.model.id);
  fill("recent", activity.recent.map((query) =>
    row([ago(query.at), query.endpoint, query.query, String(query.results), ms(query.ms)])), 5, "no queries yet");
}

const refresh = NotionLlm.start(async (call) => showStats(await call("/stats")), 5000);

$("search-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const query = $("query").value.trim();
  if (!query) return;
  set("search-info", "searching…");
  try {
    const reply = await NotionLlm.call("/search", { query, max_results: 10, similarity_threshold: 0 });
    set("search-info", count(reply.results.length, "result") + " in " + ms(reply.processing_time * 1000)
      + (reply.fusion ? " · lists: " + reply.fusion.lists.join(" + ") : ""));
    $("results").replaceChildren(...reply.results.map((hit) => {
      const item = document.createElement("li");
      const title = document.createElement("b");
      title.textContent = hit.title;
      const source = document.createElement("span");
      source.className = "quiet";
      source.textContent = " " + hit.source + " · score " + hit.similarity_score.toFixed(3) + " · " + hit.source_type;
      const snippet = document.createElement("div");
      snippet.className = "snippet";
      snippet.textContent = hit.content_snippet;
      item.append(title, source, snippet);
      return item;
    }));
    refresh();
  } catch (error) {
    set("search-info", error.message);
  }
});

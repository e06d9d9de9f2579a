// What both notion-llm status pages share (served at /ui/common.js, before the page's own
// /ui/app.js): the API key prompt, calls to the server's own endpoints, the refresh loop and
// formatting. Everything shown comes from the same origin; text from notes, queries or Notion
// is only ever set with textContent, never parsed as HTML.
"use strict";

const NotionLlm = (() => {
  // sessionStorage is per origin and per tab: the key is gone when the tab closes.
  const KEY_SLOT = "notion-llm-api-key";
  const $ = (id) => document.getElementById(id);
  const set = (id, text) => { $(id).textContent = text; };

  function headers(json) {
    const h = {};
    const key = sessionStorage.getItem(KEY_SLOT);
    if (key) h["Authorization"] = "Bearer " + key;
    if (json) h["Content-Type"] = "application/json";
    return h;
  }

  // GET `path`, or POST `body` as JSON; the parsed reply, or an Error with the server's message.
  async function call(path, body) {
    const init = body === undefined
      ? { headers: headers(false) }
      : { method: "POST", headers: headers(true), body: JSON.stringify(body) };
    const response = await fetch(path, init);
    const data = await response.json().catch(() => ({}));
    if (response.status === 401) {
      throw Object.assign(new Error("the API key is missing or wrong"), { unauthorized: true });
    }
    if (!response.ok) throw new Error((data.error && data.error.message) || response.statusText);
    return data;
  }

  function ago(epochSeconds) {
    if (!epochSeconds) return "never";
    const seconds = Math.max(0, Math.round(Date.now() / 1000 - epochSeconds));
    if (seconds < 60) return seconds + " s ago";
    if (seconds < 3600) return Math.round(seconds / 60) + " min ago";
    if (seconds < 86400) return Math.round(seconds / 3600) + " h ago";
    return Math.round(seconds / 86400) + " d ago";
  }

  const ms = (value) => (value === null || value === undefined ? "–" : value.toFixed(1) + " ms");
  const duration = (seconds) => (seconds < 1 ? ms(seconds * 1000) : seconds < 90 ? seconds.toFixed(1) + " s"
    : Math.round(seconds / 60) + " min");
  const count = (n, one, many) => n.toLocaleString() + " " + (n === 1 ? one : many || one + "s");
  const percent = (ratio) => (ratio === null || ratio === undefined ? "–" : (ratio * 100).toFixed(0) + " %");

  // A table row of text cells (a cell may be a Node, e.g. a link).
  function row(cells) {
    const tr = document.createElement("tr");
    for (const cell of cells) {
      const td = document.createElement("td");
      if (cell instanceof Node) td.append(cell); else td.textContent = cell;
      tr.append(td);
    }
    return tr;
  }

  // Fills tbody `id` with `rows`, or one row saying `empty` when there are none.
  function fill(id, rows, columns, empty) {
    if (rows.length) {
      $(id).replaceChildren(...rows);
    } else {
      const td = document.createElement("td");
      td.colSpan = columns;
      td.className = "quiet";
      td.textContent = empty;
      const tr = document.createElement("tr");
      tr.append(td);
      $(id).replaceChildren(tr);
    }
  }

  // Refreshes every `everyMs`: /health, then `load(call)`, which fills the figures. Without a
  // key (401) the figures stay hidden and the key form is shown.
  function start(load, everyMs) {
    async function refresh() {
      try {
        const health = await call("/health");
        set("version", health.version);
        const badge = $("health");
        badge.textContent = health.status;
        badge.className = "badge " + (health.status === "healthy" ? "good" : "warn");
        await load(call);
        $("key-form").hidden = true;
        $("figures").hidden = false;
        set("updated", "updated " + new Date().toLocaleTimeString());
        document.body.dataset.loaded = "true";
      } catch (error) {
        if (error.unauthorized) {
          $("figures").hidden = true;
          $("key-form").hidden = false;
          set("key-error", sessionStorage.getItem(KEY_SLOT) ? error.message : "");
        } else {
          const badge = $("health");
          badge.textContent = "unreachable";
          badge.className = "badge bad";
          set("updated", error.message);
        }
      }
    }
    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      sessionStorage.setItem(KEY_SLOT, $("key").value);
      $("key").value = "";
      refresh();
    });
    refresh();
    setInterval(refresh, everyMs);
    return refresh;
  }

  return { $, set, call, ago, ms, duration, count, percent, row, fill, start };
})();

#!/usr/bin/env bash
# The main job on the bundled sample notes: install the runtime, build, index examples/notes,
# ask a question in English and one in Chinese, and show the answer context.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

scripts/setup.sh
cargo build --release --locked -p local-agent
agent="target/release/local-agent --data-dir $repo/.data/demo"

echo; echo "== indexing examples/notes"
$agent index examples/notes

echo; echo "== local-agent search \"How does Rust prevent data races?\""
$agent search "How does Rust prevent data races?" --top-k 3 --threshold 0.3

echo; echo "== local-agent search \"如何提高工作效率？\""
$agent search "如何提高工作效率？" --top-k 3 --threshold 0.3

echo; echo "== the whole chain on this machine: Notion (sandbox) → cloud-fn → tunnel → local-agent → LLM (stand-in)"
cargo build --release --locked -p cloud-fn -p testkit --bins
work="$repo/.data/demo-chain"
rm -rf "$work" && mkdir -p "$work"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

# Starts a program in the background and waits for the line of its output that starts with $2;
# that line is left in $work/<name>.line. (Not called in $(…): the pid must reach `pids`.)
start() {
  local name=$1 prefix=$2; shift 2
  "$@" >"$work/$name.out" 2>"$work/$name.log" &
  pids+=($!)
  for _ in $(seq 300); do
    line=$(grep -m1 "^$prefix" "$work/$name.out" || true)
    [ -n "$line" ] && { echo "$line" >"$work/$name.line"; return; }
    kill -0 "${pids[-1]}" 2>/dev/null || { cat "$work/$name.log" >&2; echo "$name failed to start" >&2; exit 1; }
    sleep 0.1
  done
  echo "$name did not start" >&2; exit 1
}

export NOTION_API_KEY=secret_demo OPENROUTER_API_KEY=sk-or-demo AGENT_TOKEN=demo-agent-token CLOUD_API_KEY=demo-cloud-key
start notion-sandbox "NOTION_DATABASE_ID=" target/release/notion-sandbox --listen 127.0.0.1:0
sandbox_url=$(grep -m1 '^listening on ' "$work/notion-sandbox.out" | sed 's/listening on //')
database=$(cut -d= -f2 "$work/notion-sandbox.line")
start llm-standin "OPENROUTER_BASE_URL=" target/release/llm-standin --listen 127.0.0.1:0
llm_url=$(cut -d= -f2- "$work/llm-standin.line")
NOTION_API_BASE_URL=$sandbox_url NOTION_DATABASE_ID=$database OPENROUTER_BASE_URL=$llm_url \
  DATA_DIR=$work/cloud POLL_INTERVAL=1 FALLBACK_TIMEOUT=3 \
  start cloud-fn "listening on" target/release/cloud-fn serve --listen 127.0.0.1:0
cloud=$(sed 's|listening on http://||; s|;.*||' "$work/cloud-fn.line")
echo "notion sandbox $sandbox_url · LLM stand-in $llm_url · cloud http://$cloud"

notion() { curl -sf -H "Authorization: Bearer $NOTION_API_KEY" -H "Notion-Version: 2025-09-03" -H "Content-Type: application/json" "$@"; }
source_id=$(notion "$sandbox_url/v1/databases/$database" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data_sources"][0]["id"])')

start_agent() {
  CLOUD_URL="ws://$cloud/agent" start local-agent "listening on" $agent serve --listen 127.0.0.1:0
  for _ in $(seq 100); do
    curl -sf -H "Authorization: Bearer $CLOUD_API_KEY" "http://$cloud/status" | grep -q '"live_agents":1' && return
    sleep 0.1
  done
  echo "the agent did not connect" >&2; exit 1
}

# Adds a question to the questions database, waits for its answer and prints it.
ask() {
  local question=$1 tag=$2
  echo; echo "-- question: $question  [$tag]"
  page=$(notion -X POST "$sandbox_url/v1/pages" -d "$(python3 -c 'import json,sys; print(json.dumps({"parent":{"data_source_id":sys.argv[1]},"properties":{"Question":{"title":[{"text":{"content":sys.argv[2]}}]},"Status":{"status":{"name":"Pending"}},"Tags":{"multi_select":[{"name":sys.argv[3]}]}}}))' "$source_id" "$question" "$tag")" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  show_answer
}

# What a person does to follow up: writes below the last answer, sets Status back to Pending.
follow_up() {
  local text=$1
  echo; echo "-- follow-up on the same page: $text"
  notion -X PATCH "$sandbox_url/v1/blocks/$page/children" \
    -d "$(python3 -c 'import json,sys; print(json.dumps({"children":[{"paragraph":{"rich_text":[{"text":{"content":sys.argv[1]}}]}}]}))' "$text")" >/dev/null
  notion -X PATCH "$sandbox_url/v1/pages/$page" -d '{"properties":{"Status":{"status":{"name":"Pending"}}}}' >/dev/null
  show_answer
}

# Waits for $page's answer and prints the page.
show_answer() {
  for _ in $(seq 300); do
    status=$(notion "$sandbox_url/v1/pages/$page" | python3 -c 'import json,sys; print(json.load(sys.stdin)["properties"]["Status"]["status"]["name"])')
    case $status in Pending|Processing) sleep 0.1 ;; *) break ;; esac
  done
  echo "-- status: $status"
  # The page as Notion shows it: headings, paragraphs, nested bullets (the citations), toggles.
  python3 - "$sandbox_url" "$page" "$NOTION_API_KEY" <<'PY'
import json, sys, urllib.request
base, page, token = sys.argv[1:]
def children(block_id):
    request = urllib.request.Request(f"{base}/v1/blocks/{block_id}/children?page_size=100", headers={
        "Authorization": f"Bearer {token}", "Notion-Version": "2025-09-03"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["results"]
marks = {"heading_1": "# ", "heading_2": "## ", "heading_3": "### ", "bulleted_list_item": "- ",
         "numbered_list_item": "1. ", "toggle": "▸ ", "quote": "> ", "callout": "! ", "to_do": "[ ] "}
def show(block_id, depth):
    for block in children(block_id):
        kind = block["type"]
        body = block.get(kind, {})
        text = "".join(item.get("plain_text", "") for item in body.get("rich_text", []))
        if kind == "divider":
            text = "———"
        elif kind == "table_row":
            text = " | ".join("".join(item.get("plain_text", "") for item in cell) for cell in body.get("cells", []))
        if text:
            print("   " + "  " * depth + marks.get(kind, "") + text[:300].replace("\n", "\n   " + "  " * depth))
        if block.get("has_children"):
            show(block["id"], depth + 1)
show(page, 0)
PY
}

start_agent
ask "What should I do in a weekly review?" "AI效率"
echo; echo "== the agent stops (the PC sleeps): answers come from the context cached per tag"
kill "${pids[-1]}"; sleep 0.5
ask "How long should a break between focus sessions be?" "AI效率"
echo; echo "== the agent is back, reconnected on its own"
start_agent
ask "Who owns a value in Rust?" "Rust"
follow_up "And what does borrowing change about that?"

echo
echo "Next: '$agent serve' starts the HTTP API and its status page on 127.0.0.1:8001, e.g."
echo "  curl -s localhost:8001/search -H 'content-type: application/json' -d '{\"query\":\"番茄工作法\"}'"
echo "With CLOUD_URL and AGENT_TOKEN set it also connects to your cloud (see README)."

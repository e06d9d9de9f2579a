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

echo
echo "Next: '$agent serve' starts the HTTP API on 127.0.0.1:8001, e.g."
echo "  curl -s localhost:8001/search -H 'content-type: application/json' -d '{\"query\":\"番茄工作法\"}'"

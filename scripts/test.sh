#!/usr/bin/env bash
# The project's test command (README, CI): installs the runtime pieces, then runs every test.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

scripts/setup.sh

# Formatting and lints first: they fail in seconds, the tests take minutes.
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

# Integration tests load the real model and build real indexes on temporary folders.
cargo test --workspace --all-targets --locked
# Benches are compiled by the line above; running them needs the evaluation data:
#   cargo bench -p local-agent --bench scifact -- ../shared/eval/scifact

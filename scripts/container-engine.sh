#!/usr/bin/env bash
# Makes sure a container engine answers, and prints the docker client to use with it.
# Usage: docker=$(scripts/container-engine.sh)
#
# A running engine (docker info answers, at $DOCKER_HOST or the default socket) is reused.
# Otherwise Debian's dockerd (package docker.io, from scripts/system-deps.sh) is started once,
# detached, so later runs reuse it: log and pid file in $CHATWAX_ENGINE_DIR (default
# ~/.cache/chatwax/engine). It is started so that it changes no firewall rule: its default
# rules set FORWARD to DROP and load br_netfilter, which breaks the network namespaces the
# tests make themselves; so there is no bridge, and builds and containers use --network host.
# Never a second engine: a dockerd that runs but does not answer yet is waited for.
#
# The client: $DOCKER if set, else the first `docker` on PATH that builds with BuildKit, i.e.
# has the buildx plugin or is older than 23 (BuildKit built in, like Debian's 20.10).
set -euo pipefail

dir=${CHATWAX_ENGINE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/chatwax/engine}
wait_s=${CHATWAX_ENGINE_WAIT:-60}

say() { echo "container-engine: $*" >&2; }

builds_with_buildkit() {  # builds_with_buildkit CLIENT
  local version
  "$1" buildx version >/dev/null 2>&1 && return 0
  version=$("$1" --version 2>/dev/null | sed -nE 's/^Docker version ([0-9]+)\..*/\1/p')
  [[ -n $version && $version -lt 23 ]]
}

client=${DOCKER:-}
if [[ -z $client ]]; then
  while read -r candidate; do
    if builds_with_buildkit "$candidate"; then client=$candidate; break; fi
  done < <(type -ap docker | awk '!seen[$0]++')
fi
if [[ -z $client ]]; then
  say "no docker client that builds with BuildKit (docker 23+ needs the buildx plugin);"
  say "install Debian's docker.io: scripts/system-deps.sh dockerd:docker.io"
  exit 1
fi

answers() { timeout 20 "$client" info >/dev/null 2>&1; }

wait_for_engine() {  # wait_for_engine WHAT: until docker info answers, or fail
  local deadline=$((SECONDS + wait_s))
  until answers; do
    if ((SECONDS >= deadline)); then
      say "$1 did not answer within ${wait_s} s"
      [[ -f $dir/dockerd.log ]] && tail -20 "$dir/dockerd.log" >&2
      exit 1
    fi
    sleep 0.5
  done
}

if answers; then
  echo "$client"
  exit 0
fi

mkdir -p "$dir"
# One starter at a time (make images and a test session may race); the loser reuses it.
exec 9>"$dir/lock"
flock 9
if answers; then
  echo "$client"
  exit 0
fi

running=$(pgrep -x dockerd || true)
if [[ -n $running ]]; then
  say "dockerd (pid ${running//$'\n'/ }) runs; waiting for it to answer"
  wait_for_engine "the running dockerd"
  echo "$client"
  exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
  say "no container engine answers and dockerd is not installed;"
  say "install it with scripts/system-deps.sh dockerd:docker.io (Debian's docker.io)"
  exit 1
fi
if [[ $(id -u) -ne 0 ]]; then
  say "no container engine answers, and starting dockerd needs root. Start it as root with"
  say "  dockerd --iptables=false --ip6tables=false --bridge=none"
  say "and give yourself access to its socket (the docker group), or set DOCKER_HOST."
  exit 1
fi

say "starting dockerd (log: $dir/dockerd.log)"
started=$SECONDS
setsid dockerd --iptables=false --ip6tables=false --bridge=none \
  >"$dir/dockerd.log" 2>&1 </dev/null 9>&- &  # 9>&-: the lock is not the daemon's
echo $! >"$dir/dockerd.pid"
wait_for_engine "dockerd (pid $(cat "$dir/dockerd.pid"))"
say "dockerd answers after $((SECONDS - started)) s"
echo "$client"

#!/usr/bin/env bash
# Installs the system programs chatwax uses where no pip package serves, as Debian packages,
# only when missing: Prometheus (dashboard queries against a real server), Chromium (page
# screenshots), iproute2's `ip` and util-linux's `unshare` (the cluster model's pod
# networks and mounts), Debian's docker.io (the container engine the images are built and
# run with) and debootstrap (their base, where no registry answers) for the tests; g++ when
# llama-cpp-python must be compiled for the local model.
# Usage: scripts/system-deps.sh [program[:package] ...] (default: prometheus chromium
# ip:iproute2 unshare:util-linux dockerd:docker.io debootstrap).
set -euo pipefail
(($#)) || set -- prometheus chromium ip:iproute2 unshare:util-linux dockerd:docker.io debootstrap
need=()
for wanted in "$@"; do
  program=${wanted%%:*}
  package=${wanted#*:}
  command -v "$program" >/dev/null 2>&1 || need+=("$package")
done
((${#need[@]})) || exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "missing: ${need[*]} (install them with your package manager)" >&2
  exit 1
fi
sudo=""
[[ $(id -u) -eq 0 ]] || sudo="sudo"
echo "installing ${need[*]} (Debian packages)"
# docker.io's install would start its service where an init system runs, and dockerd's
# default rules set FORWARD to DROP: no daemon starts on install
# (scripts/container-engine.sh starts dockerd without firewall rules when it is needed).
policy=/usr/sbin/policy-rc.d
if [[ " ${need[*]} " == *" docker.io "* && ! -e $policy ]]; then
  trap '$sudo rm -f "$policy"' EXIT
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
  $sudo chmod 755 "$policy"
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null

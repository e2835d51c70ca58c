#!/usr/bin/env bash
# Prints the base image the chatwax images are built on (the Dockerfiles' ARG BASE_IMAGE),
# making it first when needed. Usage: base=$(scripts/base-image.sh)
#
#   $CHATWAX_BASE_IMAGE, when set: used as it is.
#   The Dockerfiles' default (the published python image, by digest): when it is here
#   already, or a registry answers a pull within $CHATWAX_PULL_TIMEOUT seconds (20).
#   Otherwise chatwax-base:bookworm, made from Debian's packages with debootstrap (root):
#   Debian 12 minbase with Python 3 and its venv, CA certificates; apt's cache and lists
#   removed. Remade when the recipe below changes (a label records it).
# The Debian mirror: $DEBIAN_MIRROR (default http://deb.debian.org/debian).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "base-image: $*" >&2; }

if [[ -n ${CHATWAX_BASE_IMAGE:-} ]]; then
  echo "$CHATWAX_BASE_IMAGE"
  exit 0
fi
docker=$(scripts/container-engine.sh)

published=$(sed -nE 's/^ARG BASE_IMAGE=(.+)$/\1/p' Dockerfile.dataflow | head -1)
if [[ -n $published ]]; then
  if "$docker" image inspect "$published" >/dev/null 2>&1; then
    echo "$published"
    exit 0
  fi
  if timeout "${CHATWAX_PULL_TIMEOUT:-20}" "$docker" pull -q "$published" >/dev/null 2>&1; then
    say "pulled $published"
    echo "$published"
    exit 0
  fi
  say "no registry answers for $published: using a base made from Debian packages"
fi

image=chatwax-base:bookworm
suite=bookworm
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# python-is-python3: `python` as in the published image.
packages=python3,python3-venv,python-is-python3,ca-certificates
recipe=$(printf '%s %s minbase v1' "$suite" "$packages" | sha256sum | cut -c1-16)
have=$("$docker" image inspect -f '{{index .Config.Labels "chatwax.base.recipe"}}' "$image" \
  2>/dev/null || true)
if [[ $have == "$recipe" ]]; then
  echo "$image"
  exit 0
fi

command -v debootstrap >/dev/null 2>&1 || {
  say "debootstrap is missing: scripts/system-deps.sh debootstrap"; exit 1; }
[[ $(id -u) -eq 0 ]] || {
  say "making $image with debootstrap needs root (or set CHATWAX_BASE_IMAGE)"; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/chatwax-base.XXXXXX")
trap 'rm -rf "$work"' EXIT
started=$SECONDS
say "making $image from $mirror ($suite, $packages)"
if ! debootstrap --variant=minbase --include="$packages" "$suite" "$work/root" "$mirror" \
    >"$work/debootstrap.log" 2>&1; then
  tail -30 "$work/debootstrap.log" >&2
  say "debootstrap failed"
  exit 1
fi
# No layer keeps apt's downloads or package lists (an image build runs apt-get update).
rm -rf "$work"/root/var/cache/apt/archives/*.deb "$work"/root/var/lib/apt/lists/*
tar --numeric-owner -C "$work/root" -c . |
  "$docker" import -c 'ENV LANG=C.UTF-8' -c "LABEL chatwax.base.recipe=$recipe" - "$image" \
    >/dev/null
say "made $image in $((SECONDS - started)) s"
echo "$image"

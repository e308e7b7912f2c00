"""The images' supply chain (issue 17, finding 4): every package the training image, the convert image
and the trainer's source bundle install is pinned to one version with the SHA-256 of its files, the
Dockerfiles install only such locks (``--require-hashes --no-deps``, wheels only), and what they COPY
exists in the build context. The locks are made by ``infra/locks.sh`` (docs/training.md, "Images")."""

from __future__ import annotations

import fnmatch
import gzip
import io
import json
import re
import shlex
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from modelops.compute import source_bundle

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = {
    "training": ROOT / "infra/modelops_training/Dockerfile",
    "convert": ROOT / "functions/convert/Dockerfile",
}
LOCKS = {  # lock -> the top-level inputs it is made from
    ROOT / "infra/modelops_training/requirements.txt": ROOT / "infra/modelops_training/requirements.in",
    ROOT / "functions/convert/requirements.txt": ROOT / "functions/convert/requirements.in",
}
SOURCE_INPUT = ROOT / "infra/modelops_training/requirements-source.in"
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")
PIN = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(\[[A-Za-z0-9,._-]+\])?==(?P<version>[A-Za-z0-9.+!_-]+)$"
)
ALLOWED_OPTIONS = {"--require-hashes", "--only-binary=:all:"}


# ---------------------------------------------------------------------------- parsing
def logical_lines(text: str) -> list[str]:
    """A requirements file's lines with comments dropped and ``\\`` continuations joined."""
    out: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#"):
            continue
        line = re.sub(r"\s+#.*$", "", line)
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current = (current + line).strip()
        if current:
            out.append(current)
        current = ""
    assert not current.strip(), "a requirements file ends inside a continued line"
    return out


@dataclass(frozen=True)
class Pinned:
    name: str
    version: str
    hashes: tuple[str, ...]


def parse_lock(text: str) -> tuple[set[str], dict[str, Pinned]]:
    """Options and pins of a hashed lock; fails on any line that is not ``name==version --hash=...``."""
    options: set[str] = set()
    pins: dict[str, Pinned] = {}
    for line in logical_lines(text):
        if line.startswith("-"):
            options.add(line)
            continue
        spec, *rest = line.split()
        found = PIN.match(spec)
        assert found, f"not an exact pin (name==version, no marker, no URL): {line[:120]!r}"
        assert rest and all(HASH.fullmatch(h) for h in rest), f"{spec}: every file needs --hash=sha256"
        name = canonicalize_name(found["name"])
        assert name not in pins, f"{name} pinned twice"
        pins[name] = Pinned(name, found["version"], tuple(rest))
    return options, pins


def top_level(path: Path) -> dict[str, str]:
    """The ``name==version`` inputs of a ``*.in`` file."""
    out: dict[str, str] = {}
    for line in logical_lines(path.read_text()):
        req = Requirement(line)
        [spec] = req.specifier
        assert spec.operator == "==", f"{path.name}: {line!r} is not pinned exactly"
        out[canonicalize_name(req.name)] = spec.version
    return out


def dev_pins() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in logical_lines((ROOT / "requirements/dev.txt").read_text()):
        name, _, version = line.partition("==")
        out[canonicalize_name(name)] = version
    return out


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with comments dropped and ``\\`` continuations joined."""
    out: list[tuple[str, str]] = []
    current = ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not current):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, args = current.strip().partition(" ")
        out.append((keyword.upper(), args.strip()))
        current = ""
    return out


def copies(dockerfile: Path) -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY/ADD from the build context (``--from`` stages skipped)."""
    out = []
    for keyword, args in instructions(dockerfile):
        if keyword not in ("COPY", "ADD"):
            continue
        words = json.loads(args) if args.startswith("[") else shlex.split(args)
        flags = [w for w in words if w.startswith("--")]
        if any(f.startswith("--from") for f in flags):
            continue
        *sources, dest = [w for w in words if not w.startswith("--")]
        out.append((sources, dest))
    return out


def dockerignored(relpath: str) -> bool:
    patterns = [
        p.strip()
        for p in (ROOT / ".dockerignore").read_text().splitlines()
        if p.strip() and not p.startswith("#")
    ]
    parts = relpath.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        assert not pattern.startswith("!"), "exceptions in .dockerignore: teach this test about them"
        bare = pattern.removeprefix("**/")
        if any(fnmatch.fnmatchcase(p, pattern) for p in prefixes):
            return True
        if pattern.startswith("**/") and any(fnmatch.fnmatchcase(part, bare) for part in parts):
            return True
    return False


def pip_installs(dockerfile: Path) -> list[list[str]]:
    """The words of every ``pip install`` command the Dockerfile's RUN instructions hold."""
    found = []
    for keyword, args in instructions(dockerfile):
        if keyword != "RUN":
            continue
        lexer = shlex.shlex(args, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words: list[str] = []
        for token in [*lexer, ";"]:  # commands end at &&, ||, ;, | (quotes respected)
            if token.strip("&|;"):
                words.append(token)
                continue
            if any(Path(w).name in ("pip", "pip3") for w in words) and "install" in words:
                found.append(words)
            words = []
    return found


# ---------------------------------------------------------------------------- the locks
@pytest.mark.parametrize("lock", sorted(LOCKS), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_package_of_an_image_lock_is_pinned_with_its_hashes(lock: Path) -> None:
    text = lock.read_text()
    options, pins = parse_lock(text)

    assert not options, f"{lock.name}: options belong on the pip command line, not in the lock"
    assert len(pins) > 20, "a full lock lists the transitive packages too"
    assert "infra/locks.sh" in text.split("\n", 3)[1], "the lock names the command that makes it"


@pytest.mark.parametrize("lock", sorted(LOCKS), ids=lambda p: str(p.relative_to(ROOT)))
def test_a_lock_holds_its_inputs_and_the_versions_the_tests_ran(lock: Path) -> None:
    """Editing a ``*.in`` without running infra/locks.sh, or a lock that drifted from requirements/dev.txt
    (the environment the tests run in), fails here."""
    _, pins = parse_lock(lock.read_text())
    inputs = top_level(LOCKS[lock])
    dev = dev_pins()

    for name, version in inputs.items():
        assert name in pins and pins[name].version == version, f"{name}=={version} of {LOCKS[lock].name}"
    drifted = {n: (p.version, dev[n]) for n, p in pins.items() if n in dev and dev[n] != p.version}
    assert not drifted, f"lock vs requirements/dev.txt: {drifted}"


def test_the_source_bundle_installs_only_hashed_pins() -> None:
    """The AWS TensorFlow image pip-installs the bundle's requirements.txt at the job's start: it must
    name exact versions with hashes (hash-checking mode, wheels only), never a range."""
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(source_bundle()))) as tar:
        member = tar.extractfile("requirements.txt")
        assert member is not None
        text = member.read().decode()

    options, pins = parse_lock(text)

    assert options == ALLOWED_OPTIONS
    for name, version in top_level(SOURCE_INPUT).items():
        assert pins[name].version == version
    assert {"pydantic", "pydantic-core", "typing-extensions", "annotated-types"} <= set(pins)
    dev = dev_pins()
    assert all(dev.get(n, p.version) == p.version for n, p in pins.items())


# ---------------------------------------------------------------------------- the Dockerfiles
@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_what_a_dockerfile_copies_exists_in_the_build_context(image: str) -> None:
    """Both images build from the repository root (the context sam build and docs/training.md use)."""
    checked = 0
    for sources, _ in copies(DOCKERFILES[image]):
        for source in sources:
            assert "$" not in source and not source.startswith("/"), source
            assert (ROOT / source).exists(), f"{image}: COPY {source}: no such file in the context"
            assert not dockerignored(source), f"{image}: COPY {source} is excluded by .dockerignore"
            checked += 1
    assert checked >= 3


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_a_dockerfile_installs_only_a_hashed_lock(image: str) -> None:
    dockerfile = DOCKERFILES[image]
    copied = {dest: sources for sources, dest in copies(dockerfile)}
    installs = pip_installs(dockerfile)

    assert installs, f"{image}: no pip install found (the parser missed it?)"
    for words in installs:
        assert {"--require-hashes", "--no-deps", "--only-binary=:all:"} <= set(words), " ".join(words)
        assert "-r" in words and len(words) == words.index("-r") + 2, f"{image}: install one lock file"
        target = words[words.index("-r") + 1]
        [source] = copied[target]
        assert ROOT / source in LOCKS, f"{image}: {target} is not one of the hashed locks"
        assert [w for w in words if not w.startswith("-")] == ["pip", "install", target], (
            f"{image}: nothing but the lock is installed: {' '.join(words)}"
        )


def test_the_parsers_catch_what_they_are_for() -> None:
    """The checks above are only as good as their parsers: a loose pin, a missing hash and an unhashed
    install are each caught."""
    with pytest.raises(AssertionError, match="exact pin"):
        parse_lock("pydantic>=2.12,<3\n")
    with pytest.raises(AssertionError, match="hash"):
        parse_lock("pydantic==2.14.4\n")
    _, ok = parse_lock("pydantic==2.14.4 \\\n    --hash=sha256:" + "a" * 64 + "\n    # via x\n")
    assert ok["pydantic"].version == "2.14.4"
    assert dockerignored("tests/unit") and dockerignored("layers/x/__pycache__/y.pyc")
    assert not dockerignored("layers/shared/modelops")

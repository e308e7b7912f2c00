"""Build the training and convert images, push them to ECR, and say how to deploy with them.

    python infra/images.py plan  [--config-env ENV] [--stack NAME] [--region R] [--account ID]
    python infra/images.py build [--config-env ENV] [--stack NAME]
    python infra/images.py push  [--config-env ENV] [--stack NAME] [--region R] [--aws PATH]

``make images`` is ``push``, ``make images-plan`` is ``plan`` (infra/images.mk; docs/deploy.md "First
deployment, end to end"). ``push`` deploys the repositories' stack (infra/images.yaml, ``STACK-images``),
logs Docker in to ECR, builds each image whose tag is not in ECR yet and pushes it, then writes
``.modelops/images/STACK.json`` (the URIs by digest) and ``.modelops/images/STACK.template.yaml`` (the
template ``sam build`` builds from: ConvertFunction runs the pushed image, so sam neither rebuilds nor
pushes it), and prints the ``sam build`` and ``sam deploy`` commands that use them. ``plan`` prints every
command without running any. The argument lists are built by pure functions (tests/unit/test_images_push.py).

An image's tag is the hash of its inputs (the Dockerfile, every file it COPYs minus .dockerignore,
.dockerignore itself, the platform and the build arguments), so the same inputs give the same tag, and a
tag that ECR already holds is not built again (the repositories' tags are immutable).
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
PLATFORM = "linux/amd64"  # Lambda's x86_64 (ConvertFunction) and SageMaker/Batch GPU instances
REPOS_TEMPLATE = "infra/images.yaml"
BUILD_DIR = ".aws-sam/build"
CONVERT_FUNCTION = "ConvertFunction"
TRAINING_PARAMETER = "TrainingImageUri"
PLACEHOLDER_ACCOUNT = "ACCOUNT"
PLACEHOLDER_DIGEST = "sha256:DIGEST"  # plan cannot know a digest before the push
TAG_PREFIX = "inputs-"
HASH_VERSION = b"modelops-images/1\n"  # change it to retag every image (a change in what the hash covers)
_REPO_NAME = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")

NO_DOCKER = (
    "make images needs a running Docker engine with the buildx plugin, and found none here: {detail}. "
    "Install Docker (Docker Desktop, or Docker Engine with the docker-buildx-plugin package on Linux), "
    "start it so that `docker info` and `docker buildx version` both succeed, and run `make images` "
    "again. `make images-plan` prints every command it would run (docker buildx build, docker push, "
    "sam build, sam deploy) without Docker and without AWS."
)


class ImagesError(Exception):
    """A precondition or a command failed; the message says what to do."""


@dataclass(frozen=True)
class Image:
    name: str  # also the repository's last path segment
    dockerfile: str  # relative to the repository root, which is the build context


IMAGES = (
    Image("training", "infra/modelops_training/Dockerfile"),
    Image("convert", "functions/convert/Dockerfile"),
)


# ---------------------------------------------------------------------------- inputs and tags
def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, comments dropped, ``\\`` continuations joined."""
    out: list[tuple[str, str]] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not current):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        keyword, _, args = (current + line).strip().partition(" ")
        out.append((keyword.upper(), args.strip()))
        current = ""
    return out


def copied_sources(dockerfile_text: str) -> list[str]:
    """What the Dockerfile COPYs or ADDs from the build context (``--from`` stages skipped)."""
    sources: list[str] = []
    for keyword, args in _instructions(dockerfile_text):
        if keyword not in ("COPY", "ADD"):
            continue
        words = json.loads(args) if args.startswith("[") else shlex.split(args)
        if any(w.startswith("--from") for w in words):
            continue
        *srcs, _dest = [w for w in words if not w.startswith("--")]
        sources.extend(srcs)
    return sources


def _ignore_patterns(root: Path) -> list[str]:
    path = root / ".dockerignore"
    if not path.exists():
        return []
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def dockerignored(relpath: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps ``relpath`` out of the context (prefix and ``**/`` patterns)."""
    parts = relpath.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        if pattern.startswith("!"):
            raise ImagesError(f".dockerignore: exceptions ({pattern}) are not understood by infra/images.py")
        if any(fnmatch.fnmatchcase(p, pattern) for p in prefixes):
            return True
        if pattern.startswith("**/") and any(fnmatch.fnmatchcase(p, pattern[3:]) for p in parts):
            return True
    return False


def input_files(image: Image, root: Path = ROOT) -> list[str]:
    """Every file that decides the image: the Dockerfile, .dockerignore, and what it copies."""
    patterns = _ignore_patterns(root)
    found = {image.dockerfile}
    if (root / ".dockerignore").exists():
        found.add(".dockerignore")
    for source in copied_sources((root / image.dockerfile).read_text()):
        if "$" in source or source.startswith("/") or not (root / source).exists():
            raise ImagesError(f"{image.dockerfile}: COPY {source}: not a file in the build context")
        path = root / source
        files = [path] if path.is_file() else [p for p in sorted(path.rglob("*")) if p.is_file()]
        for file in files:
            rel = file.relative_to(root).as_posix()
            if not dockerignored(rel, patterns):
                found.add(rel)
    return sorted(found)


def image_tag(
    image: Image, root: Path = ROOT, platform: str = PLATFORM, build_args: dict[str, str] | None = None
) -> str:
    """``inputs-`` and 32 hex digits of SHA-256 over the image's inputs: the same inputs, the same tag."""
    digest = hashlib.sha256(HASH_VERSION)
    digest.update(f"platform={platform}\n".encode())
    for key, value in sorted((build_args or {}).items()):
        digest.update(f"arg {key}={value}\n".encode())
    for rel in input_files(image, root):
        digest.update(f"file {rel} {hashlib.sha256((root / rel).read_bytes()).hexdigest()}\n".encode())
    return TAG_PREFIX + digest.hexdigest()[:32]


# ---------------------------------------------------------------------------- names
def registry(account: str, region: str) -> str:
    suffix = ".amazonaws.com.cn" if region.startswith("cn-") else ".amazonaws.com"
    return f"{account}.dkr.ecr.{region}{suffix}"


def repository_prefix(stack: str) -> str:
    """The stack's name as an ECR namespace (lower case; ECR refuses doubled or trailing separators)."""
    prefix = stack.lower()
    if not _REPO_NAME.fullmatch(prefix):
        raise ImagesError(
            f"stack name {stack!r} cannot name an ECR repository (lower case letters and digits, single "
            "'-', '_' or '.' between them); choose another stack name"
        )
    return prefix


def repository(stack: str, image: Image) -> str:
    return f"{repository_prefix(stack)}/{image.name}"


def repository_uri(account: str, region: str, stack: str, image: Image) -> str:
    return f"{registry(account, region)}/{repository(stack, image)}"


def images_stack(stack: str) -> str:
    return f"{stack}-images"


# ---------------------------------------------------------------------------- commands (argv lists)
def build_argv(image: Image, ref: str, epoch: int, platform: str = PLATFORM) -> list[str]:
    """``docker buildx build`` of one image into the local engine (``--load``), tagged ``ref``.

    ``--provenance=false --sbom=false``: the result is one image manifest, not an index with
    attestation manifests, which Lambda refuses and untagged-image lifecycle rules would break; ECR's
    scan on push lists the packages instead. ``SOURCE_DATE_EPOCH`` fixes the image's timestamps.
    """
    return [
        "docker", "buildx", "build",
        "--platform", platform,
        "--file", image.dockerfile,
        "--tag", ref,
        "--build-arg", f"SOURCE_DATE_EPOCH={epoch}",
        "--provenance=false",
        "--sbom=false",
        "--load",
        ".",
    ]  # fmt: skip


def push_argv(ref: str) -> list[str]:
    return ["docker", "push", ref]


def login_argvs(aws: str, account: str, region: str) -> tuple[list[str], list[str]]:
    """``aws ecr get-login-password | docker login``: the password goes through a pipe, never argv."""
    return (
        [aws, "ecr", "get-login-password", "--region", region],
        ["docker", "login", "--username", "AWS", "--password-stdin", registry(account, region)],
    )


def account_argv(aws: str, region: str) -> list[str]:
    return [aws, "sts", "get-caller-identity", "--region", region, "--query", "Account", "--output", "text"]


def repositories_argv(aws: str, stack: str, region: str) -> list[str]:
    return [
        aws, "cloudformation", "deploy",
        "--region", region,
        "--stack-name", images_stack(stack),
        "--template-file", REPOS_TEMPLATE,
        "--parameter-overrides", f"RepositoryPrefix={repository_prefix(stack)}",
        "--no-fail-on-empty-changeset",
    ]  # fmt: skip


def digest_argv(aws: str, region: str, stack: str, image: Image, tag: str) -> list[str]:
    return [
        aws, "ecr", "describe-images",
        "--region", region,
        "--repository-name", repository(stack, image),
        "--image-ids", f"imageTag={tag}",
        "--query", "imageDetails[0].imageDigest",
        "--output", "text",
    ]  # fmt: skip


def build_template_path(stack: str) -> str:
    return f".modelops/images/{stack}.template.yaml"


def sam_build_argv(stack: str) -> list[str]:
    """``sam build`` from the images' template; ``--base-dir .`` keeps the code paths relative to the root."""
    return [
        "sam", "build",
        "--template", build_template_path(stack),
        "--base-dir", ".",
        "--build-dir", BUILD_DIR,
        "--cached",
        "--parallel",
    ]  # fmt: skip


def sam_deploy_argv(
    env: DeployConfig, region: str, training_uri: str, convert_repository_uri: str
) -> list[str]:
    """``sam deploy`` of the environment with the training image added to its parameters.

    A ``--parameter-overrides`` on the command line replaces the environment's list in samconfig.toml
    (it is not merged), so the environment's own overrides are repeated. The built template names the
    convert image by its ECR digest, so sam pushes nothing; yet it still wants a repository option for an
    image function: with ``resolve_image_repos = true`` (samconfig.toml) none is given (sam finds no image
    to push and creates no companion repository); otherwise ``--image-repository`` (the singular:
    ``--image-repositories ConvertFunction=...`` is refused for a function whose image is already in ECR,
    "Incomplete list of function logical ids", and next to ``resolve_image_repos``).
    """
    overrides = dict(env.parameter_overrides)
    overrides[TRAINING_PARAMETER] = training_uri
    argv = ["sam", "deploy", "--config-env", env.name, "--stack-name", env.stack, "--region", region]
    argv += ["--parameter-overrides", *(f"{k}={v}" for k, v in overrides.items())]
    if not env.resolve_image_repos:
        argv += ["--image-repository", convert_repository_uri]
    return argv


# ---------------------------------------------------------------------------- samconfig.toml
@dataclass(frozen=True)
class DeployConfig:
    name: str
    stack: str
    parameter_overrides: tuple[tuple[str, str], ...]
    resolve_image_repos: bool


def deploy_config(samconfig: dict[str, object], env: str, stack: str | None = None) -> DeployConfig:
    """The environment's stack name, parameter overrides and repository choice from samconfig.toml."""
    section = samconfig.get(env)
    if not isinstance(section, dict):
        raise ImagesError(f"samconfig.toml has no environment {env!r} (its environments: default, dev, prod)")
    deploy = section.get("deploy", {}).get("parameters", {})
    glob = section.get("global", {}).get("parameters", {})
    name = stack or deploy.get("stack_name") or glob.get("stack_name")
    if not name:
        raise ImagesError(f"samconfig.toml [{env}] names no stack_name: pass --stack NAME")
    raw = deploy.get("parameter_overrides", [])
    items = raw if isinstance(raw, list) else shlex.split(raw)
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ImagesError(f"samconfig.toml [{env}] parameter_overrides: {item!r} is not KEY=VALUE")
        pairs.append((key, value))
    return DeployConfig(env, str(name), tuple(pairs), bool(deploy.get("resolve_image_repos", False)))


def read_samconfig(root: Path = ROOT) -> dict[str, object]:
    return tomllib.loads((root / "samconfig.toml").read_text())


# ---------------------------------------------------------------------------- the build template
def _build_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("modelops_infra_build", ROOT / "infra" / "build.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_template(template_text: str, convert_uri: str) -> str:
    """template.yaml with ConvertFunction running ``convert_uri`` instead of building its Dockerfile."""
    build = _build_module()
    text: str = build.zip_only_template(template_text)
    return text.replace(f"ImageUri: {build.PLACEHOLDER}", f"ImageUri: {convert_uri}", 1)


# ---------------------------------------------------------------------------- plan
@dataclass(frozen=True)
class Target:
    stack: str
    region: str
    account: str


def plan_commands(
    target: Target, env: DeployConfig, tags: dict[str, str], epochs: dict[str, int], aws: str = "aws"
) -> list[list[str] | str]:
    """Every command ``push`` runs, in order (a string is a shell line with a pipe, or a comment)."""
    get_password, docker_login = login_argvs(aws, target.account, target.region)
    steps: list[list[str] | str] = [
        "# 1. the repositories (once per stack; no change, no change set)",
        repositories_argv(aws, target.stack, target.region),
        "# 2. Docker logs in to the registry",
        f"{shlex.join(get_password)} | {shlex.join(docker_login)}",
    ]
    uris = {}
    for image in IMAGES:
        repo_uri = repository_uri(target.account, target.region, target.stack, image)
        ref = f"{repo_uri}:{tags[image.name]}"
        uris[image.name] = f"{repo_uri}@{PLACEHOLDER_DIGEST}"
        steps += [
            f"# 3. {image.name}: skipped when ECR already holds {tags[image.name]} (the digest is read back)",
            digest_argv(aws, target.region, target.stack, image, tags[image.name]),
            build_argv(image, ref, epochs[image.name]),
            push_argv(ref),
        ]
    steps += [
        f"# 4. {build_template_path(target.stack)}: template.yaml with {CONVERT_FUNCTION}'s ImageUri = "
        f"{uris['convert']}",
        sam_build_argv(target.stack),
        sam_deploy_argv(
            env,
            target.region,
            uris["training"],
            repository_uri(target.account, target.region, target.stack, IMAGES[1]),
        ),
    ]
    return steps


def render(steps: list[list[str] | str]) -> str:
    return "\n".join(s if isinstance(s, str) else shlex.join(s) for s in steps)


# ---------------------------------------------------------------------------- running
def source_date_epoch(files: list[str]) -> int:
    """SOURCE_DATE_EPOCH if set, else the time of the last commit touching the inputs, else 0."""
    if os.environ.get("SOURCE_DATE_EPOCH", "").isdigit():
        return int(os.environ["SOURCE_DATE_EPOCH"])
    try:
        out = subprocess.run(
            ["git", "log", "-1", "--format=%ct", "--", *files], cwd=ROOT, capture_output=True, text=True
        )
    except OSError:
        return 0
    return int(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip().isdigit() else 0


def docker_problem() -> str | None:
    """Why Docker cannot build here (no client, no engine, no buildx), or None."""
    if not shutil.which("docker"):
        return "there is no `docker` command on PATH"
    try:
        info = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, timeout=60
        )
        if info.returncode != 0:
            lines = (info.stderr or info.stdout).strip().splitlines()
            return f"`docker info` cannot reach an engine ({lines[-1] if lines else 'no output'})"
        buildx = subprocess.run(["docker", "buildx", "version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`docker` did not answer ({exc})"
    if buildx.returncode != 0:
        return "the engine runs but `docker buildx version` fails (the buildx plugin is missing)"
    return None


def _run(argv: list[str], *, capture: bool = False, stdin: str | None = None) -> str:
    print("+", shlex.join(argv), flush=True)
    try:
        done = subprocess.run(
            argv, cwd=ROOT, input=stdin, capture_output=capture or stdin is not None, text=True
        )
    except OSError as exc:
        raise ImagesError(f"cannot run {argv[0]}: {exc}") from exc
    if done.returncode != 0:
        detail = (done.stderr or "").strip().splitlines()[-1:] if done.stderr else []
        raise ImagesError(f"`{shlex.join(argv[:3])} ...` failed (exit {done.returncode}) {' '.join(detail)}")
    return done.stdout or ""


def _existing_digest(aws: str, target: Target, image: Image, tag: str) -> str | None:
    argv = digest_argv(aws, target.region, target.stack, image, tag)
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        if "ImageNotFoundException" in done.stderr:
            return None
        raise ImagesError(f"`aws ecr describe-images` failed: {done.stderr.strip()}")
    digest = done.stdout.strip()
    return digest if digest.startswith("sha256:") else None


def _aws_cli(given: str | None) -> str:
    for candidate in (given, os.environ.get("MODELOPS_AWS_CLI"), shutil.which("aws")):
        if candidate:
            return candidate
    tool = ROOT / ".tools/awscli/bin/aws"
    if tool.exists():
        return str(tool)
    raise ImagesError("no AWS CLI: install one, run `make tools` (.tools/awscli), or pass --aws PATH")


def build(target: Target | None, aws: str = "aws") -> dict[str, dict[str, str]]:
    """Build both images: into the local engine only (``target`` None), or for ECR and push them."""
    problem = docker_problem()
    if problem:
        raise ImagesError(NO_DOCKER.format(detail=problem))
    out: dict[str, dict[str, str]] = {}
    for image in IMAGES:
        tag = image_tag(image)
        epoch = source_date_epoch(input_files(image))
        if target is None:
            ref = f"modelops-{image.name}:{tag}"
            _run(build_argv(image, ref, epoch))
            out[image.name] = {"ref": ref, "tag": tag}
            continue
        repo_uri = repository_uri(target.account, target.region, target.stack, image)
        digest = _existing_digest(aws, target, image, tag)
        if digest:
            print(f"{image.name}: {repo_uri}:{tag} is in ECR already ({digest}); not built again", flush=True)
        else:
            _run(build_argv(image, f"{repo_uri}:{tag}", epoch))
            _run(push_argv(f"{repo_uri}:{tag}"))
            digest = _existing_digest(aws, target, image, tag)
            if not digest:
                raise ImagesError(f"pushed {repo_uri}:{tag} but ECR does not list it")
        out[image.name] = {"uri": f"{repo_uri}@{digest}", "tag": tag, "repository": repo_uri}
    return out


def push(env: DeployConfig, region: str, aws: str) -> int:
    problem = docker_problem()
    if problem:
        raise ImagesError(NO_DOCKER.format(detail=problem))
    account = _run(account_argv(aws, region), capture=True).strip()
    if not account.isdigit():
        raise ImagesError(f"`aws sts get-caller-identity` gave {account!r}, not an account id")
    target = Target(env.stack, region, account)
    _run(repositories_argv(aws, env.stack, region))
    get_password, docker_login = login_argvs(aws, account, region)
    _run(docker_login, stdin=_run(get_password, capture=True))
    images = build(target, aws)
    template = ROOT / build_template_path(env.stack)
    template.parent.mkdir(parents=True, exist_ok=True)
    template.write_text(build_template((ROOT / "template.yaml").read_text(), images["convert"]["uri"]))
    deploy = sam_deploy_argv(env, region, images["training"]["uri"], images["convert"]["repository"])
    record = {
        "stack": env.stack,
        "region": region,
        "images": images,
        "parameters": {TRAINING_PARAMETER: images["training"]["uri"]},
        CONVERT_FUNCTION: images["convert"]["uri"],
        "next": [shlex.join(sam_build_argv(env.stack)), shlex.join(deploy)],
    }
    out = template.parent / f"{env.stack}.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\n{TRAINING_PARAMETER}={images['training']['uri']}")
    print(f"{CONVERT_FUNCTION} image: {images['convert']['uri']}")
    print(f"written: {out.relative_to(ROOT)}, {template.relative_to(ROOT)}\nnext:")
    print("\n".join(f"  {line}" for line in record["next"]))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="infra/images.py", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["plan", "build", "push"])
    parser.add_argument(
        "--config-env", default="default", help="samconfig.toml environment (default, dev, prod)"
    )
    parser.add_argument("--stack", help="application stack name (default: the environment's stack_name)")
    parser.add_argument(
        "--region", default=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    )
    parser.add_argument("--account", help="plan only: the account id to show (default: ACCOUNT)")
    parser.add_argument("--aws", help="the AWS CLI (default: MODELOPS_AWS_CLI, aws on PATH, .tools/awscli)")
    args = parser.parse_args(argv)
    try:
        env = deploy_config(read_samconfig(), args.config_env, args.stack)
        if args.command == "plan":
            target = Target(env.stack, args.region or "us-east-1", args.account or PLACEHOLDER_ACCOUNT)
            tags = {image.name: image_tag(image) for image in IMAGES}
            epochs = {image.name: source_date_epoch(input_files(image)) for image in IMAGES}
            print(render(plan_commands(target, env, tags, epochs, args.aws or "aws")))
            return 0
        if args.command == "build":
            for name, built in build(None).items():
                print(f"{name}: {built['ref']}")
            return 0
        if not args.region:
            raise ImagesError(
                "no region: pass --region R or set AWS_REGION (make images uses AWS_DEFAULT_REGION)"
            )
        return push(env, args.region, _aws_cli(args.aws))
    except ImagesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())

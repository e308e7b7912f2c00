"""``make images`` (infra/images.py): the tags are the hash of the images' inputs, the commands it runs
(docker buildx build, docker push, the ECR login, sam build, sam deploy) are the argument lists asserted
here, the repositories' stack is what it claims, the Dockerfiles lint clean with hadolint, and without
Docker it stops with one clear paragraph, never a traceback. Nothing here needs Docker or AWS."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from infra import images
from infra.images import IMAGES, DeployConfig, ImagesError, Target
from tests.cfn import CfnLoader, load

ROOT = Path(__file__).resolve().parents[2]
TRAINING, CONVERT = IMAGES
ACCOUNT, REGION = "123456789012", "eu-west-1"
REGISTRY = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
DIGEST = "sha256:" + "ab" * 32
DEV = DeployConfig("dev", "modelops-dev", (("JobPrefix", "modelops-dev"), ("LogRetentionDays", "7")), True)


def hadolint() -> Path:
    found = Path(os.environ.get("MODELOPS_HADOLINT") or ROOT / ".tools/hadolint/bin/hadolint")
    if not found.exists():
        pytest.fail(
            f"hadolint is missing at {found}: run `make tools` (.tools/hadolint) or set MODELOPS_HADOLINT"
        )
    return found


def context_copy(tmp_path: Path) -> Path:
    """The files the two images are built from, in a scratch build context."""
    for rel in {f for image in IMAGES for f in images.input_files(image)}:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, tmp_path / rel)
    return tmp_path


# ---------------------------------------------------------------------------- tags
def test_the_same_inputs_give_the_same_tag_and_any_input_changes_it(tmp_path: Path) -> None:
    # Given a copy of the build context
    root = context_copy(tmp_path)
    tag = images.image_tag(TRAINING, root)

    # Then the copy tags like the repository, and again the same
    assert tag == images.image_tag(TRAINING) == images.image_tag(TRAINING, root)
    assert tag.startswith("inputs-") and len(tag) == len("inputs-") + 32
    assert images.image_tag(CONVERT, root) != tag

    # When .dockerignore'd files appear (bytecode caches), the tag stays
    cache = root / "layers/shared/modelops/__pycache__/x.cpython-312.pyc"
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(b"\0")
    assert images.image_tag(TRAINING, root) == tag

    # When a copied source, the lock, the Dockerfile, the platform or a build argument changes, it changes
    changed = set()
    for rel in ("layers/shared/modelops/domain/encoding.py", "infra/modelops_training/requirements.txt"):
        before = (root / rel).read_text()
        (root / rel).write_text(before + "\n# changed\n")
        changed.add(images.image_tag(TRAINING, root))
        (root / rel).write_text(before)
    (root / TRAINING.dockerfile).write_text((root / TRAINING.dockerfile).read_text() + "LABEL x=y\n")
    changed.add(images.image_tag(TRAINING, root))
    changed.add(images.image_tag(CONVERT, ROOT, platform="linux/arm64"))
    changed.add(images.image_tag(TRAINING, ROOT, build_args={"BASE_IMAGE": "python:3.12@sha256:" + "0" * 64}))
    assert len(changed) == 5 and tag not in changed


def test_the_inputs_are_the_dockerfile_and_what_it_copies() -> None:
    training = images.input_files(TRAINING)
    convert = images.input_files(CONVERT)

    assert {TRAINING.dockerfile, ".dockerignore", "infra/modelops_training/requirements.txt"} <= set(training)
    assert "infra/modelops_training/entrypoint.py" in training and "functions/convert/app.py" not in training
    assert {"functions/convert/app.py", "functions/convert/requirements.txt"} <= set(convert)
    assert "layers/shared/modelops/domain/encoding.py" in convert
    assert not [f for f in training + convert if "__pycache__" in f or f.startswith("tests/")]


def test_a_copy_of_a_missing_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM python:3.12-slim\nCOPY nowhere/app.py /app.py\n")

    with pytest.raises(ImagesError, match="COPY nowhere/app.py: not a file in the build context"):
        images.input_files(images.Image("x", "Dockerfile"), tmp_path)


# ---------------------------------------------------------------------------- names
def test_repository_names_follow_the_stack() -> None:
    assert images.registry(ACCOUNT, REGION) == REGISTRY
    assert images.registry(ACCOUNT, "cn-north-1") == f"{ACCOUNT}.dkr.ecr.cn-north-1.amazonaws.com.cn"
    assert images.repository("ModelOps-Dev", TRAINING) == "modelops-dev/training"
    assert images.repository_uri(ACCOUNT, REGION, "modelops", CONVERT) == f"{REGISTRY}/modelops/convert"
    assert images.images_stack("modelops-dev") == "modelops-dev-images"


@pytest.mark.parametrize("stack", ["modelops--dev", "modelops-", ""])
def test_a_stack_name_ecr_cannot_use_is_refused(stack: str) -> None:
    with pytest.raises(ImagesError, match="cannot name an ECR repository"):
        images.repository_prefix(stack)


# ---------------------------------------------------------------------------- the commands
def test_docker_buildx_build_arguments() -> None:
    ref = f"{REGISTRY}/modelops-dev/training:inputs-{'0' * 32}"

    argv = images.build_argv(TRAINING, ref, epoch=1700000000)

    assert argv == [
        "docker", "buildx", "build",
        "--platform", "linux/amd64",
        "--file", "infra/modelops_training/Dockerfile",
        "--tag", ref,
        "--build-arg", "SOURCE_DATE_EPOCH=1700000000",
        "--provenance=false",
        "--sbom=false",
        "--load",
        ".",
    ]  # fmt: skip
    assert images.push_argv(ref) == ["docker", "push", ref]


def test_the_login_pipes_the_password_and_the_repositories_stack_is_deployed() -> None:
    get_password, login = images.login_argvs("aws", ACCOUNT, REGION)

    assert get_password == ["aws", "ecr", "get-login-password", "--region", REGION]
    assert login == ["docker", "login", "--username", "AWS", "--password-stdin", REGISTRY]
    assert images.repositories_argv("aws", "ModelOps-Dev", REGION) == [
        "aws", "cloudformation", "deploy", "--region", REGION,
        "--stack-name", "ModelOps-Dev-images",
        "--template-file", "infra/images.yaml",
        "--parameter-overrides", "RepositoryPrefix=modelops-dev",
        "--no-fail-on-empty-changeset",
    ]  # fmt: skip
    assert images.digest_argv("aws", REGION, "modelops-dev", CONVERT, "inputs-1") == [
        "aws", "ecr", "describe-images", "--region", REGION,
        "--repository-name", "modelops-dev/convert",
        "--image-ids", "imageTag=inputs-1",
        "--query", "imageDetails[0].imageDigest", "--output", "text",
    ]  # fmt: skip


def test_sam_deploy_repeats_the_environments_overrides_and_adds_the_training_image() -> None:
    """A command-line --parameter-overrides replaces samconfig.toml's list, so it is repeated in full."""
    training = f"{REGISTRY}/modelops-dev/training@{DIGEST}"
    convert_repo = f"{REGISTRY}/modelops-dev/convert"

    resolving = images.sam_deploy_argv(DEV, REGION, training, convert_repo)
    named = images.sam_deploy_argv(DeployConfig("x", "stack-x", (), False), REGION, training, convert_repo)

    assert resolving == [
        "sam", "deploy", "--config-env", "dev", "--stack-name", "modelops-dev", "--region", REGION,
        "--parameter-overrides", "JobPrefix=modelops-dev", "LogRetentionDays=7", f"TrainingImageUri={training}",
    ]  # fmt: skip
    assert named[-3:] == [f"TrainingImageUri={training}", "--image-repository", convert_repo]
    assert images.sam_build_argv("modelops-dev") == [
        "sam", "build", "--template", ".modelops/images/modelops-dev.template.yaml",
        "--base-dir", ".", "--build-dir", ".aws-sam/build", "--cached", "--parallel",
    ]  # fmt: skip


def test_a_given_training_image_replaces_the_environments_own() -> None:
    env = DeployConfig("e", "s", (("TrainingImageUri", "old"), ("JobPrefix", "p")), True)

    argv = images.sam_deploy_argv(env, REGION, "new", "repo")

    assert [a for a in argv if a.startswith("TrainingImageUri=")] == ["TrainingImageUri=new"]


@pytest.mark.parametrize("env", ["default", "dev", "prod"])
def test_the_committed_samconfig_environments_read(env: str) -> None:
    config = images.deploy_config(images.read_samconfig(), env)
    raw = images.read_samconfig()[env]["deploy"]["parameters"]  # type: ignore[index]

    assert config.stack.startswith("modelops")
    assert [f"{k}={v}" for k, v in config.parameter_overrides] == raw["parameter_overrides"]
    assert config.resolve_image_repos == raw.get("resolve_image_repos", False)
    assert images.deploy_config(images.read_samconfig(), env, "other").stack == "other"


def test_a_missing_environment_or_a_bad_override_is_named() -> None:
    with pytest.raises(ImagesError, match="no environment 'staging'"):
        images.deploy_config(images.read_samconfig(), "staging")
    with pytest.raises(ImagesError, match="'JobPrefix' is not KEY=VALUE"):
        images.deploy_config(
            {"e": {"deploy": {"parameters": {"stack_name": "s", "parameter_overrides": "JobPrefix"}}}}, "e"
        )
    with pytest.raises(ImagesError, match="names no stack_name"):
        images.deploy_config({"e": {}}, "e")


def test_the_plan_lists_every_command_in_order() -> None:
    tags = {"training": "inputs-t", "convert": "inputs-c"}
    target = Target("modelops-dev", REGION, ACCOUNT)

    steps = images.plan_commands(target, DEV, tags, {"training": 1, "convert": 2})
    commands = [s for s in steps if isinstance(s, list)]

    assert [c[:2] for c in commands] == [
        ["aws", "cloudformation"],
        ["aws", "ecr"], ["docker", "buildx"], ["docker", "push"],
        ["aws", "ecr"], ["docker", "buildx"], ["docker", "push"],
        ["sam", "build"], ["sam", "deploy"],
    ]  # fmt: skip
    assert f"{REGISTRY}/modelops-dev/convert:inputs-c" in commands[5]
    assert "SOURCE_DATE_EPOCH=2" in commands[5]
    assert commands[-1][-1] == f"TrainingImageUri={REGISTRY}/modelops-dev/training@sha256:DIGEST"
    assert f"--password-stdin {REGISTRY}" in images.render(steps)


# ---------------------------------------------------------------------------- the build template
def test_the_build_template_runs_the_pushed_convert_image_and_builds_the_rest() -> None:
    uri = f"{REGISTRY}/modelops-dev/convert@{DIGEST}"
    original = load(ROOT / "template.yaml")["Resources"]

    built = yaml.load(images.build_template((ROOT / "template.yaml").read_text(), uri), Loader=CfnLoader)
    resources = built["Resources"]

    convert = resources["ConvertFunction"]
    assert convert["Properties"]["ImageUri"] == uri and convert["Properties"]["PackageType"] == "Image"
    assert "Metadata" not in convert  # nothing for sam build to build
    assert {k: v for k, v in resources.items() if k != "ConvertFunction"} == {
        k: v for k, v in original.items() if k != "ConvertFunction"
    }


# ---------------------------------------------------------------------------- the repositories
def test_the_repositories_stack_keeps_tags_immutable_scans_and_expires() -> None:
    t = load(ROOT / "infra/images.yaml")
    repos = {k: v for k, v in t["Resources"].items() if v["Type"] == "AWS::ECR::Repository"}

    assert set(repos) == {"TrainingRepository", "ConvertRepository"}
    for logical_id, repo in repos.items():
        props = repo["Properties"]
        image = logical_id.removesuffix("Repository").lower()
        assert props["RepositoryName"] == {"Fn::Sub": f"${{RepositoryPrefix}}/{image}"}
        assert images.repository("ModelOps", images.Image(image, "")) == f"modelops/{image}"
        assert props["ImageTagMutability"] == "IMMUTABLE"
        assert props["ImageScanningConfiguration"] == {"ScanOnPush": True}
        assert repo["DeletionPolicy"] == "Retain"
        policy = json.loads(
            props["LifecyclePolicy"]["LifecyclePolicyText"]["Fn::Sub"].replace("${ImagesKept}", "10")
        )
        [rule] = policy["rules"]
        assert rule["selection"] == {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 10}
    assert t["Parameters"]["ImagesKept"]["MinValue"] >= 2


# ---------------------------------------------------------------------------- the Dockerfiles
def test_the_dockerfiles_lint_clean() -> None:
    done = subprocess.run(
        [
            hadolint(),
            "--config",
            ROOT / ".hadolint.yaml",
            "--format",
            "json",
            *(ROOT / i.dockerfile for i in IMAGES),
        ],
        capture_output=True,
        text=True,
    )

    assert json.loads(done.stdout or "[]") == [], done.stdout
    assert done.returncode == 0, done.stderr


def test_hadolint_and_its_config_catch_what_they_are_for(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM quay.io/someone/python:latest\nRUN cd /tmp && pip install requests\n")

    done = subprocess.run(
        [hadolint(), "--config", ROOT / ".hadolint.yaml", "--format", "json", bad],
        capture_output=True,
        text=True,
    )

    codes = {finding["code"] for finding in json.loads(done.stdout)}
    assert {"DL3003", "DL3007", "DL3013", "DL3026"} <= codes
    assert done.returncode != 0


# ---------------------------------------------------------------------------- without Docker
def fake_bin(tmp_path: Path, docker: str | None) -> dict[str, str]:
    """An environment whose PATH has only python (and a fake ``docker`` when given)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    if docker is not None:
        (bin_dir / "docker").write_text(f"#!/bin/sh\n{docker}\n")
        (bin_dir / "docker").chmod(0o755)
    return {"PATH": str(bin_dir), "HOME": str(tmp_path), "SOURCE_DATE_EPOCH": "0"}


@pytest.mark.parametrize(
    ("docker", "detail"),
    [
        (
            'echo "Cannot connect to the Docker daemon at unix:///nonexistent.sock. Is the docker daemon running?" >&2; exit 1',
            "cannot reach an engine (Cannot connect to the Docker daemon",
        ),
        (None, "there is no `docker` command on PATH"),
        (
            '[ "$1" = buildx ] && { echo "unknown command: docker buildx" >&2; exit 1; }; echo 28.2.2',
            "buildx plugin is missing",
        ),
    ],
    ids=["engine-down", "no-client", "no-buildx"],
)
@pytest.mark.parametrize("command", ["push", "build"])
def test_without_docker_it_says_what_to_do_in_one_paragraph(
    tmp_path: Path, docker: str | None, detail: str, command: str
) -> None:
    done = subprocess.run(
        [
            sys.executable,
            ROOT / "infra/images.py",
            command,
            "--config-env",
            "dev",
            "--region",
            REGION,
            "--aws",
            "aws",
        ],
        capture_output=True,
        text=True,
        env=fake_bin(tmp_path, docker),
        cwd=tmp_path,
    )

    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    [paragraph] = done.stderr.strip().splitlines()
    assert paragraph.startswith("error: make images needs a running Docker engine with the buildx plugin")
    assert detail in paragraph and "`make images-plan` prints every command" in paragraph


def test_the_plan_needs_neither_docker_nor_aws(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, ROOT / "infra/images.py", "plan", "--config-env", "prod", "--account", ACCOUNT],
        capture_output=True,
        text=True,
        env=fake_bin(tmp_path, None),
        cwd=tmp_path,
    )

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert sum(line.startswith("docker buildx build ") for line in lines) == 2
    assert lines[-1].startswith(
        "sam deploy --config-env prod --stack-name modelops-prod --region us-east-1 --parameter-overrides "
    )
    assert (
        f"--tag {ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/modelops-prod/training:{images.image_tag(TRAINING)}"
        in done.stdout
    )

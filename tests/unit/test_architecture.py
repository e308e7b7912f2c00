"""The rooms of the package, checked where import-linter cannot see (docs/architecture.md).

import-linter (``make imports``, pyproject ``[tool.importlinter]``) checks the layers, the pure domain,
who may import ``modelops.ml`` and the absence of cycles. These tests check the rest: the Lambda entries
are thin and named like their stages, botocore is named only by the storage layer and the client
factory, and the docs link nothing outside the repository.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "layers" / "shared" / "modelops"
FUNCTIONS = sorted(p.parent.name for p in (ROOT / "functions").glob("*/app.py"))


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_every_function_has_a_stage_named_like_it() -> None:
    assert FUNCTIONS == [
        "alert",
        "convert",
        "dataset_parts",
        "fanout",
        "gate",
        "monitor",
        "predict",
        "score",
        "train_trigger",
    ]
    for name in FUNCTIONS:
        assert (PACKAGE / "stages" / f"{name}.py").is_file() or (
            PACKAGE / "stages" / name / "__init__.py"
        ).is_file(), f"functions/{name} has no modelops.stages.{name}"


@pytest.mark.parametrize("name", FUNCTIONS)
def test_function_entries_are_thin(name: str) -> None:
    """An entry imports its own stage (and Powertools' types), nothing of the library's other rooms."""
    path = ROOT / "functions" / name / "app.py"
    mods = {m for m in imported_modules(path) if m.split(".")[0] in ("modelops", "boto3", "botocore")}
    own = (f"modelops.stages.{name}", "modelops.stages.runtime")
    assert any(m.startswith(own[0]) for m in mods), f"functions/{name}/app.py does not import its stage"
    stray = {m for m in mods if m != "modelops.stages" and not m.startswith(own)}
    assert not stray, f"functions/{name}/app.py reaches past its own stage: {sorted(stray)}"
    assert len(path.read_text().splitlines()) <= 60, f"functions/{name}/app.py is not a thin entry"


def names_botocore(path: Path) -> bool:
    """Whether the code (not its prose) imports botocore or names its exception types."""
    banned = {"ClientError", "BotoCoreError"}
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "botocore" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "botocore":
            return True
        if isinstance(node, ast.Name) and node.id in banned:
            return True
        if isinstance(node, ast.Attribute) and node.attr in banned:
            return True
    return False


def test_botocore_is_named_only_by_storage_and_the_client_factory() -> None:
    allowed = {PACKAGE / "aws.py"} | set((PACKAGE / "storage").rglob("*.py"))
    code = [p for p in sorted(PACKAGE.rglob("*.py")) if p not in allowed]
    code += sorted((ROOT / "functions").glob("*/app.py"))
    offenders = [str(p.relative_to(ROOT)) for p in code if names_botocore(p)]
    assert not offenders, f"botocore outside storage/ and aws.py: {offenders}"


def test_docs_link_nothing_outside_the_repository() -> None:
    texts = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for path in texts:
        for target in re.findall(r"\]\(([^)#\s]+)", path.read_text()):
            if re.match(r"[a-z]+://", target):
                continue
            resolved = (path.parent / target).resolve()
            assert resolved.is_relative_to(ROOT), f"{path.name} links outside the repository: {target}"
            assert resolved.exists(), f"{path.name} links a missing file: {target}"
        # a path named in plain text (`../shared/...`) points outside the clone just the same
        outside = re.findall(r"(?<![\w./])\.\./[\w./-]+", path.read_text())
        assert not outside, f"{path.name} names paths outside the repository: {outside[:3]}"

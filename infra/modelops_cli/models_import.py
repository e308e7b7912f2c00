"""``modelops models import NAME PATH``: a model trained elsewhere, through the same convert path.

PATH is a SavedModel folder (``saved_model.pb`` at its top) or a ``.keras`` file. The command reads
its serving signature here (TensorFlow), checks ``--sample`` against it, then writes what a training
job would have left (docs/convert.md "Script and imported models", docs/contracts.md "Jobs"):

1. ``jobs/{job}.json`` (create-only, ``source: "import"``, who, the file's SHA-256, the sample and
   evaluation keys in ``split``), the job named from the archive, the spec and the rows;
2. the rows: a CSV sample as the job's training rows (``inputs/{model}/{job}/train.csv``), ``--eval``
   as the model's evaluation rows (``evaluation/{model}/heldout/{sha256}.csv``, which the gate scores);
3. ``staging/{model}/{job}/output/model.tar.gz`` (create-only): the model, and ``sample.npz`` for an
   ``.npy``/``.npz`` sample;
4. S3's "Object Created" event of that archive (EventBridge) reaches ConvertFunction (its
   ``ModelImported`` rule): conversion, parity, the serving budget, then the gate, events and alerts
   as for a job.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

import click
import numpy as np

from modelops.domain.archive import deterministic_targz
from modelops.domain.dataset import validate_file
from modelops.domain.errors import ModelOpsError, SpecError
from modelops.domain.metrics import match_class
from modelops.domain.signature import TensorSpec, classes_problem
from modelops.domain.spec import MODEL_NAME_RE, ModelSpec, parse_spec
from modelops.stages.convert import IMPORT_SOURCE, SAMPLE_FILE
from modelops.stages.train_trigger import job_name, spec_sha256
from modelops.storage import keys
from modelops.storage.evaluation import EvaluationStore
from modelops.storage.jobs import JobStore
from modelops.storage.s3 import ObjectStore
from modelops_cli.context import Context
from modelops_cli.models import models

SIGNATURE = "serving_default"
Input = tuple[str, tuple[int, ...], str]
"""A serving input: name, shape without the batch, dtype."""


def _usage(message: str) -> click.UsageError:
    return click.UsageError(message)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        if path.is_dir():
            digest.update(f.relative_to(path).as_posix().encode() + b"\0")
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def model_kind(path: Path) -> str:
    """``savedmodel`` or ``keras``; a usage error (exit 2) for anything else."""
    if path.is_dir() and (path / "saved_model.pb").is_file():
        return "savedmodel"
    if path.is_file() and path.suffix == ".keras":
        return "keras"
    raise _usage(f"{path} is neither a SavedModel folder (saved_model.pb at its top) nor a .keras file")


def serving_signature(path: Path, kind: str, work: Path) -> tuple[list[Input], list[Input]]:
    """The ``serving_default`` inputs and outputs of the model at ``path``, each by name (a ``.keras``
    file is exported first, as convert does)."""
    import tensorflow as tf

    saved = path
    if kind == "keras":
        import keras

        saved = work / "exported"
        model = keras.models.load_model(str(path), compile=False)
        try:
            model.export(str(saved), format="tf_saved_model", verbose=False)
        except TypeError:  # Keras before 3.5
            model.export(str(saved), format="tf_saved_model")
    try:
        fn = tf.saved_model.load(str(saved)).signatures[SIGNATURE]
    except (KeyError, OSError, ValueError) as exc:
        raise _usage(f"{path} has no usable {SIGNATURE!r} signature: {exc}") from None
    _, kwargs = fn.structured_input_signature
    outputs = fn.structured_outputs
    if not isinstance(outputs, dict):
        outputs = {"output_0": outputs}

    def described(specs: dict[str, Any]) -> list[Input]:
        """(name, shape without the batch, dtype); -1 for a dynamic dimension (convert refuses it)."""
        out: list[Input] = []
        for name, spec in sorted(specs.items()):
            dims = spec.shape.as_list() if spec.shape.rank is not None else [None, -1]
            out.append((name, tuple(-1 if d is None else int(d) for d in dims[1:]), spec.dtype.name))
        return out

    return described(kwargs), described(outputs)


def parse_classes(text: str) -> list[Any]:
    """``--classes``: a JSON list of strings or numbers (``'["cat", "dog"]'``, ``'[0, 1]'``), or names
    separated by commas (``cat,dog``; all numbers read as numbers, ``0,1,2`` as ``[0, 1, 2]``, as the
    dataset validator reads a numeric target). Usage error: fewer than two, a repeat, an empty name."""
    text = text.strip()
    if text.startswith("["):
        try:
            found = json.loads(text)
        except ValueError as exc:
            raise _usage(f"--classes: not a JSON list: {exc}") from None
        if not isinstance(found, list) or any(
            isinstance(c, bool)
            or not isinstance(c, str | int | float)
            or (isinstance(c, float) and not math.isfinite(c))
            for c in found
        ):
            raise _usage('--classes: a JSON list of strings or numbers, e.g. \'["cat", "dog"]\'')
        classes: list[Any] = found
    else:
        names = [c.strip() for c in text.split(",")]
        if any(not n for n in names):
            raise _usage(f"--classes: an empty name in {text[:80]!r}; separate the names with commas")
        classes = names
        try:
            numbers = [float(n) for n in names]
        except ValueError:
            numbers = None
        if numbers is not None and all(math.isfinite(v) for v in numbers):
            classes = [int(v) if v.is_integer() else v for v in numbers]
    if len(classes) < 2:
        raise _usage(f"--classes: a classifier has at least two classes; got {classes!r}")
    if len({str(c) for c in classes}) != len(classes):
        raise _usage(f"--classes: a class repeats in {classes!r}")
    return classes


def _check_classes(spec: ModelSpec, classes: list[Any], outputs: list[Input], source: str) -> None:
    """The classes name the scores of the model's first output, as convert checks (usage error)."""
    name, shape, dtype = outputs[0]
    problem = classes_problem(spec.task, classes, TensorSpec(name, shape, dtype))
    if problem is not None:
        raise _usage(f"{source}: {problem}")


def _describe(inputs: list[Input]) -> str:
    return ", ".join(f"{n} {list(s)} {d}" for n, s, d in inputs)


def _check_shape(name: str, shape: tuple[int, ...], got: tuple[int, ...]) -> None:
    if got[1:] != shape or got[0] == 0:
        raise _usage(
            f"--sample: input {name!r} takes [rows, {', '.join(map(str, shape))}], the sample has {list(got)}"
        )


def tensor_sample(sample: Path, inputs: list[Input]) -> dict[str, np.ndarray]:
    """An ``.npy`` (one-input models) or ``.npz`` (arrays by input name) sample, checked against the
    signature (usage error naming the input and the shapes)."""
    if sample.suffix == ".npy":
        if len(inputs) != 1:
            raise _usage(
                f"--sample: an .npy sample is for a one-input model; this one takes {_describe(inputs)}"
            )
        arr = np.load(sample, allow_pickle=False)
        name, shape, _ = inputs[0]
        _check_shape(name, shape, tuple(arr.shape) if arr.ndim else (0,))
        return {name: arr}
    with np.load(sample, allow_pickle=False) as npz:
        arrays = {k: np.asarray(npz[k]) for k in npz.files}
    missing = [n for n, _, _ in inputs if n not in arrays]
    if missing:
        raise _usage(f"--sample lacks input {missing[0]!r}: the model takes {_describe(inputs)}")
    for name, shape, _ in inputs:
        arr = arrays[name]
        _check_shape(name, shape, tuple(arr.shape) if arr.ndim else (0,))
    return {n: arrays[n] for n, _, _ in inputs}


def _header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        return [c.strip() for c in next(csv.reader(fh), [])]


def _validation(
    spec: ModelSpec, csv_path: Path | None, sample_csv: Path | None, classes: list[Any] | None = None
) -> dict[str, Any]:
    """What train_trigger records as ``validation``: the features, their types and the classes, from
    the labelled rows (``--eval``, else a CSV sample holding the target); usage error when rejected.
    ``classes`` (``--classes``) win over the rows' labels, which must then be among them."""
    labelled = csv_path or (sample_csv if sample_csv and spec.target in _header(sample_csv) else None)
    if labelled is not None:
        report = validate_file(labelled, spec)
        if not report.ok:
            raise _usage(f"{labelled.name}: {report.code}: {report.reason}")
        found = report.classes
        if classes is not None and found is not None:
            unknown = [c for c in found if match_class(c, classes) is None]
            if unknown:
                raise _usage(
                    f"{labelled.name}: labels {unknown[:10]!r} are not among --classes {classes[:20]!r}"
                )
        chosen = classes if classes is not None else found
        return {"features": report.features, "feature_types": report.feature_types, "classes": chosen}
    features = list(
        spec.features or [c for c in _header(sample_csv) if c != spec.target] if sample_csv else []
    )
    return {"features": features, "feature_types": {}, "classes": classes}


def _check_tensor_eval(eval_csv: Path, target: str, types: dict[str, str], inputs: list[Input]) -> None:
    """Usage error unless the gate can feed the ``--eval`` rows to this tensor model exactly
    (``modelops.domain.evaluation.feed_problem``): one input, whose values per row are the CSV's columns
    but the target (row-major, in the CSV's order), none of them categories."""
    columns = [c for c in _header(eval_csv) if c != target]
    if len(inputs) != 1:
        raise _usage(
            f"--eval: the gate feeds each row to a model with one input; this one takes {_describe(inputs)} "
            "(leave --eval out; --classes names a classifier's classes)"
        )
    name, shape, dtype = inputs[0]
    size = math.prod(shape)
    if len(columns) != size:
        raise _usage(
            f"--eval: {eval_csv.name} has {len(columns)} columns besides the target {target!r}; input "
            f"{name!r} takes {list(shape)} {dtype}, {size} values per row (the columns, in their order, "
            "fill it row-major)"
        )
    cats = [c for c in columns if types.get(c) == "categorical"]
    if cats:
        raise _usage(f"--eval: {', '.join(cats[:5])} hold categories; input {name!r} takes numbers ({dtype})")


def _read_spec(ctx: Context, name: str, spec_file: Path | None) -> ModelSpec:
    if spec_file is not None:
        raw: bytes | None = spec_file.read_bytes()
    else:
        obj = ObjectStore(ctx.client("s3"), ctx.output("DataBucketName")).get_bytes(keys.spec(name))
        raw = obj
    if raw is None:
        raise _usage(f"model {name!r} has no spec: upload datasets/{name}/model.json or pass --spec FILE")
    try:
        return parse_spec(raw)
    except SpecError as exc:
        raise _usage(f"the spec of {name!r} is invalid: {exc}") from None


def _who(ctx: Context) -> str:
    try:
        return str(ctx.client("sts").get_caller_identity().get("Arn") or "unknown")
    except Exception:  # noqa: BLE001 - lineage only: an import is not refused for it
        return "unknown"


@models.command("import")
@click.argument("name")
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--sample",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Representative inputs: CSV (a tabular model), .npy (one input) or .npz (by input name).",
)
@click.option(
    "--eval",
    "eval_csv",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Labelled rows (CSV: the features and the target) the gate scores on; for a tensor model, "
    "its one input's values, flattened row-major, and the target.",
)
@click.option(
    "--spec",
    "spec_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="The model's spec (default: datasets/NAME/model.json in the data bucket).",
)
@click.option(
    "--classes",
    "classes_text",
    default=None,
    help="A classifier's class names, in the order of its first output's scores: comma-separated "
    "(cat,dog) or a JSON list ('[0, 1]'). Default: the --eval rows' labels, else none (no labels).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def import_model(
    ctx: click.Context,
    name: str,
    path: Path,
    sample: Path | None,
    eval_csv: Path | None,
    spec_file: Path | None,
    classes_text: str | None,
    as_json: bool,
) -> None:
    """Import a SavedModel folder or a .keras file as a new version of NAME (convert, parity, gate)."""
    if not MODEL_NAME_RE.match(name):
        raise _usage(f"invalid model name {name[:60]!r}")
    kind = model_kind(path)
    if sample is not None and sample.suffix not in (".csv", ".npy", ".npz"):
        raise _usage(f"--sample must be a .csv, .npy or .npz file, not {sample.name}")
    given_classes = parse_classes(classes_text) if classes_text is not None else None
    obj: Context = ctx.find_object(Context)
    spec = _read_spec(obj, name, spec_file)
    with tempfile.TemporaryDirectory(prefix="modelops-import-") as tmp:
        work = Path(tmp)
        inputs, outputs = serving_signature(path, kind, work)
        if given_classes is not None:
            if spec.task == "regression":
                raise _usage("--classes is for a binary or multiclass model; the spec says regression")
            _check_classes(spec, given_classes, outputs, "--classes")
        sample_csv = sample if sample is not None and sample.suffix == ".csv" else None
        validation = _validation(spec, eval_csv, sample_csv, given_classes)
        if given_classes is None and validation["classes"] is not None and spec.task != "regression":
            _check_classes(
                spec, validation["classes"], outputs, "the --eval rows' labels (or pass --classes)"
            )
        features = validation["features"]
        tabular = len(inputs) == 1 and inputs[0][1] == (len(features),) and bool(features)
        if eval_csv is not None and not tabular:
            _check_tensor_eval(eval_csv, spec.target, validation["feature_types"], inputs)
        tensors: dict[str, np.ndarray] | None = None
        if sample is not None and sample_csv is None:
            tensors = tensor_sample(sample, inputs)
        elif sample_csv is not None and not tabular:
            raise _usage(
                f"--sample: a CSV sample is for a model with one input of [{len(features)}] values (the "
                f"features {features[:10]}); this one takes {_describe(inputs)}"
            )
        elif sample is None and not (tabular and eval_csv is not None):
            raise _usage(f"--sample is needed: the model takes {_describe(inputs)}")
        rows_csv = sample_csv or (eval_csv if tabular else None)
        if tabular and rows_csv is None:
            raise _usage("--sample: a tabular model's sample is a CSV of its features (or pass --eval)")
        if rows_csv is not None:
            missing = [f for f in features if f not in _header(rows_csv)]
            if missing:
                raise _usage(f"--sample: the CSV lacks the feature columns {missing[:10]}")

        # the archive: the model as given, and the tensor sample
        folder = work / "model"
        folder.mkdir()
        if kind == "savedmodel":
            shutil.copytree(path, folder / "saved_model")
        else:
            shutil.copyfile(path, folder / "model.keras")
        if tensors is not None:
            np.savez(folder / SAMPLE_FILE, **tensors)
        archive = deterministic_targz(folder, ".")
        model_sha = _sha256(path)
        rows = b"".join(p.read_bytes() for p in (sample, eval_csv) if p is not None)
        if given_classes is not None:  # other classes, another job (none: the job names of before)
            rows += b"\0classes:" + json.dumps(given_classes).encode()
        rows_sha = hashlib.sha256(rows).hexdigest()
        registry = obj.registry(ctx.meta.get("registry_bucket"))
        bucket = registry.objects.bucket
        job = job_name(
            name,
            hashlib.sha256(archive).hexdigest(),
            spec_sha256(spec),
            "import",
            stack=bucket,
            code_sha256=rows_sha,
        )
        jobs = JobStore(registry.objects)
        try:
            split: dict[str, Any] = {"method": "import"}
            if rows_csv is not None:
                split["train"] = jobs.put_train_rows(name, job, rows_csv)
            if eval_csv is not None:
                key, digest = EvaluationStore(registry.objects).put_heldout(name, eval_csv.read_bytes())
                split["evaluation"] = {"key": key, "sha256": digest}
            record = {
                "job": job,
                "model": name,
                "backend": "import",
                "source": IMPORT_SOURCE,
                "who": _who(obj),
                "model_file": {"name": path.name, "kind": kind, "sha256": model_sha},
                "sample": None if sample is None else {"name": sample.name, "sha256": _sha256(sample)},
                "eval": None if eval_csv is None else {"name": eval_csv.name, **split["evaluation"]},
                "spec": spec.model_dump(mode="json"),
                "spec_sha256": spec_sha256(spec),
                "created_at": _now(),
                "staging_prefix": jobs.staging_prefix(name, job),
                "split": split,
                "validation": validation,
            }
            created = jobs.create_record(job, record)
            key = jobs.artifact_key(name, job)
            # after the record (convert's window starts at its created_at); create-only: the same job
            # always has the same bytes, so a retry after a failed upload writes it, a re-import nothing
            written = registry.objects.create(key, archive, content_type="application/gzip")
        except ModelOpsError as exc:
            raise click.ClickException(f"{exc.code}: {exc}") from None
    out = {
        "model": name,
        "job": job,
        "created": created or written,
        "artifact": jobs.staging_uri(key),
        "sha256": model_sha,
        "inputs": [{"name": n, "shape": list(s), "dtype": d} for n, s, d in inputs],
        "tabular": tabular,
        "classes": validation["classes"],
    }
    if as_json:
        click.echo(json.dumps(out, indent=1))
        return
    again = "" if created or written else " (imported before: nothing written)"
    click.echo(
        f"imported {path.name} as job {job}{again}; convert publishes the version: modelops models show {name}"
    )


def _now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

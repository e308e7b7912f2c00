"""The trainer: fit a Keras model on a validated CSV, evaluate it, export the model dir.

:func:`train` is the one fitting code path of every backend and every search trial: it checks the
dataset (:func:`check_dataset`), splits it, fits, measures the held-out metrics and writes the model
dir (``saved_model/``, ``metrics.json``, ``schema.json``, ``baseline.json``, ``heldout.npz``,
``training_record.json``: docs/contracts.md "Jobs"; the choices of split, early stopping, imputation
and metrics are in docs/training.md). A :class:`TrialHook` makes one run a search trial. The training
container's contract (environment, hyperparameters, failure file) is :mod:`modelops.ml.job`.

Categorical features (``modelops.domain.encoding``): the model's input is the index matrix (a
categorical column holds the value's index in the feature's vocabulary, OOV = ``len(vocabulary)``).
The vocabularies come from the job's ``input_schema.json`` (production's schema, written beside the
training rows by train_trigger: :data:`INPUT_SCHEMA_FILE`) when there is one, else from the training
split's rows (:func:`input_schema`). Inside the graph each index column becomes a one-hot block with
LiteRT builtin ops (cast, one_hot, gather, concatenation); the numeric columns are normalized as
before. A table without categorical features gives exactly the model it gave before.

Kept Python 3.10 compatible: the AWS TensorFlow training image runs 3.10.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelops.domain import search as searching
from modelops.domain.baseline import compute_baseline
from modelops.domain.dataset import Limits, LoadedDataset, load_csv, split_sizes
from modelops.domain.encoding import Feature, InputSchema, SchemaError, learn_vocabulary
from modelops.domain.errors import DatasetRejectedError, TrialPrunedError
from modelops.domain.metrics import classification_metrics, regression_metrics, score
from modelops.domain.spec import ModelSpec

EARLY_STOP_SHARE = 0.15
"""Share of the training rows held back to decide early stopping (the held-out split is never seen)."""
MIN_ROWS_FOR_EARLY_STOP_SPLIT = 10

INPUT_SCHEMA_FILE = "input_schema.json"
"""Production's input schema (``{"features": [Feature dicts]}``) beside the training rows: the job
trains on exactly these features, types and vocabularies (docs/training.md "Schema continuity")."""

Log = Callable[[str], None]
"""Where a job's output lines go (stdout by default: SageMaker's MetricDefinitions parse it)."""


def print_line(line: str) -> None:
    print(line, flush=True)


# ---------------------------------------------------------------------------- metrics
def constant_baseline(
    spec: ModelSpec, y_train: np.ndarray, y_val: np.ndarray, n_classes: int
) -> dict[str, Any]:
    """Metrics of the best constant predictor fitted on the training rows (mean, or class priors)."""
    m: dict[str, float | None]
    if spec.task == "regression":
        m = dict(regression_metrics(y_val, np.full(len(y_val), float(np.mean(y_train)))))
    else:
        priors = np.bincount(y_train.astype(np.int64), minlength=n_classes) / len(y_train)
        if spec.task == "binary":
            m = classification_metrics(y_val, np.full((len(y_val), 1), priors[1]))
        else:
            m = classification_metrics(y_val, np.tile(priors, (len(y_val), 1)))
    return {f"baseline_{k}": v for k, v in m.items()}


# ---------------------------------------------------------------------------- data
def split_indices(n_rows: int, validation_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) row indices: a seeded permutation, the held-out share taken first."""
    _, n_val = split_sizes(n_rows, validation_split)
    perm = np.random.default_rng(seed).permutation(n_rows)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


PARTS_DIGEST_FILE = "parts.sha256"
"""Beside a dataset of parts joined for the trainer: the SHA-256 of the parts' SHA-256s, in order."""


def pinned_schema(data_path: Path) -> InputSchema | None:
    """The ``input_schema.json`` beside the dataset file, or None. ``DatasetRejectedError`` when it is
    there but does not describe a schema."""
    path = data_path.parent / INPUT_SCHEMA_FILE
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(doc, dict):
            raise SchemaError("it is not a JSON object")
        return InputSchema.from_dict(doc)
    except (ValueError, SchemaError) as exc:
        raise DatasetRejectedError(
            f"{INPUT_SCHEMA_FILE} beside the training rows is unusable: {exc}"
        ) from None


def _check_pinned(pinned: InputSchema, data: LoadedDataset) -> None:
    """The loaded table holds exactly the pinned features, of the pinned types, in the pinned order."""
    have = dict(zip(data.features, _kinds(data), strict=True))
    missing = [f.name for f in pinned.features if f.name not in have]
    if missing:
        raise DatasetRejectedError(
            f"the dataset lacks {', '.join(repr(m) for m in missing[:10])}, which production's input schema "
            'takes (a new spec version, or "schema": "reset", allows a new schema)'
        )
    changed = [
        f"{f.name!r} ({have[f.name]}, not {f.kind})" for f in pinned.features if have[f.name] != f.kind
    ]
    if changed:
        raise DatasetRejectedError(
            f"production's input schema types differ in this dataset: {', '.join(changed[:10])}"
        )
    if list(data.features) != list(pinned.names):
        raise DatasetRejectedError("the dataset was not loaded in the order of production's input schema")


def _kinds(data: LoadedDataset) -> list[str]:
    """Each feature's type (a table loaded without types is numeric)."""
    return list(data.kinds) if len(data.kinds) == len(data.features) else ["numeric"] * len(data.features)


def input_schema(
    data: LoadedDataset, spec: ModelSpec, train_idx: np.ndarray, pinned: InputSchema | None = None
) -> InputSchema:
    """The model's input schema: ``pinned`` when given (checked against the table), else the table's
    features and types, each categorical vocabulary learned from the training rows ``train_idx`` only
    (the ``training.max_categories`` most frequent values)."""
    if pinned is not None:
        _check_pinned(pinned, data)
        return pinned
    size = spec.training.max_categories
    feats = []
    for name, kind in zip(data.features, _kinds(data), strict=True):
        if kind == "categorical":
            values = data.categories[name]
            train_values = [values[i] for i in train_idx.tolist()]
            vocab = learn_vocabulary(train_values, size)
            feats.append(Feature(name, "categorical", vocab))
        else:
            feats.append(Feature(name))
    return InputSchema(tuple(feats))


def index_matrix(data: LoadedDataset, schema: InputSchema) -> np.ndarray:
    """(rows, features) float64 in schema order: numeric columns as loaded (NaN where missing), a
    categorical column the index of each value in the feature's vocabulary (OOV when unknown or
    missing)."""
    x = np.array(data.x, dtype=np.float64, copy=True)
    for j, f in enumerate(schema.features):
        if f.categorical:
            table, oov = schema.lookup(f.name), f.oov_index
            x[:, j] = [oov if v is None else table.get(v, oov) for v in data.categories[f.name]]
    return x


# ---------------------------------------------------------------------------- model
def _configure_tf(seed: int, mixed_precision: bool) -> dict[str, Any]:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except (RuntimeError, ValueError):
            pass  # already initialised
    use_mixed = bool(mixed_precision and gpus)
    keras.mixed_precision.set_global_policy("mixed_float16" if use_mixed else "float32")
    return {"gpus": len(gpus), "device": "GPU" if gpus else "CPU", "mixed_precision": use_mixed}


def build_model(
    spec: ModelSpec,
    x_train: np.ndarray,
    n_classes: int,
    y_mean: float = 0.0,
    y_std: float = 1.0,
    schema: InputSchema | None = None,
) -> Any:
    """A Keras model: Normalization (adapted on ``x_train``), dense layers from the spec, a task head.

    Regression ends with a fixed rescaling to the target's mean and spread, so the network learns a
    standardized target while the model answers in the target's own units. With categorical features
    in ``schema`` the input is the index matrix: the numeric columns are gathered and normalized (the
    Normalization adapted on them only), each categorical column becomes a one-hot block of
    ``len(vocabulary) + 1`` (cast, one_hot: LiteRT builtin ops), and the blocks are concatenated.
    """
    import keras

    t = spec.training
    inputs = keras.Input(shape=(x_train.shape[1],), name="features", dtype="float32")
    if schema is None or not schema.categorical:
        norm = keras.layers.Normalization(name="normalize")
        norm.adapt(x_train.astype(np.float32))
        h = norm(inputs)
    else:
        h = _encoded_inputs(inputs, x_train, schema)
    for i, units in enumerate(t.hidden_units):
        h = keras.layers.Dense(units, activation="relu", name=f"dense_{i}")(h)
        if t.dropout > 0:
            h = keras.layers.Dropout(t.dropout, seed=t.seed + i, name=f"dropout_{i}")(h)
    if spec.task == "regression":
        out = keras.layers.Dense(1, dtype="float32", name="head")(h)
        out = keras.layers.Rescaling(scale=y_std, offset=y_mean, dtype="float32", name="target_scale")(out)
        loss = "mse"
    elif spec.task == "binary":
        out = keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="head")(h)
        loss = "binary_crossentropy"
    else:
        out = keras.layers.Dense(n_classes, activation="softmax", dtype="float32", name="head")(h)
        loss = "sparse_categorical_crossentropy"
    model = keras.Model(inputs, out, name="modelops")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=t.learning_rate), loss=loss)
    return model


def _encoded_inputs(inputs: Any, x_train: np.ndarray, schema: InputSchema) -> Any:
    """The index matrix -> [normalized numeric columns, one-hot block per categorical column]."""
    import keras
    from keras import ops

    numeric = [j for j, f in enumerate(schema.features) if not f.categorical]
    parts = []
    if numeric:
        norm = keras.layers.Normalization(name="normalize")
        norm.adapt(x_train[:, numeric].astype(np.float32))
        parts.append(norm(ops.take(inputs, np.asarray(numeric, dtype=np.int32), axis=1)))
    for j, f in enumerate(schema.features):
        if f.categorical:
            index = ops.cast(inputs[:, j], "int32")
            parts.append(ops.one_hot(index, f.buckets, dtype="float32"))
    return parts[0] if len(parts) == 1 else keras.layers.Concatenate(name="encoded")(parts)


def _epoch_logger(epochs: int, log: Log) -> Any:
    import keras

    class EpochLog(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            logs = logs or {}
            parts = [f"epoch {epoch + 1}/{epochs}"] + [f"{k}={float(v):.6g}" for k, v in sorted(logs.items())]
            log(" ".join(parts))

    return EpochLog()


# ---------------------------------------------------------------------------- search trials
@dataclass
class TrialHook:
    """Makes :func:`train` a search trial: the objective (the promotion metric on the selection rows) is
    measured after every epoch, logged as ``objective:<metric>=<value>`` when ``log_each_epoch``, and
    passed to ``report(epoch, value)``, which answers True to prune the trial (it then raises
    ``TrialPrunedError`` and writes nothing). ``stop`` (set on SIGTERM) ends training at the next
    epoch's end and still writes the model. After a complete trial ``final`` holds the objective of the
    model as written."""

    metric: str
    report: Callable[[int, float], bool] | None = None
    log_each_epoch: bool = False
    stop: threading.Event | None = None
    values: list[float] = field(default_factory=list)
    final: float | None = None
    epochs_run: int = 0
    pruned: bool = False


def objective_value(spec: ModelSpec, metric: str, y: np.ndarray, out: np.ndarray) -> float:
    """The promotion metric of model outputs ``out`` against ``y`` (nan when undefined, e.g. AUC of one class)."""
    value = score(spec.task, metric, y, out)
    return float(value) if value is not None else math.nan


def _trial_callback(hook: TrialHook, spec: ModelSpec, x: np.ndarray, y: np.ndarray, log: Log) -> Any:
    import keras

    def outputs(model: Any) -> np.ndarray:
        if len(x) <= 16_384:
            return np.asarray(model(x, training=False), dtype=np.float64)
        return np.asarray(model.predict(x, batch_size=8192, verbose=0), dtype=np.float64)

    class TrialReport(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            value = objective_value(spec, hook.metric, y, outputs(self.model))
            hook.values.append(value)
            if hook.log_each_epoch:
                log(f"{searching.objective_name(hook.metric)}={value:.6g}")
            if hook.report is not None and math.isfinite(value) and hook.report(epoch + 1, value):
                hook.pruned = True
                self.model.stop_training = True
            if hook.stop is not None and hook.stop.is_set():
                log("stop requested (SIGTERM): finishing with the weights so far")
                self.model.stop_training = True

    return TrialReport()


# ---------------------------------------------------------------------------- the run
def check_dataset(data_path: Path, spec: ModelSpec, hps: Mapping[str, str]) -> tuple[str, LoadedDataset]:
    """The file's SHA-256 (checked against ``dataset_sha256``) and the validated table (exactly the
    features of the ``input_schema.json`` beside it, when there is one).

    Raises ``DatasetRejectedError`` when the file does not validate or is not the dataset the job was
    started for."""
    digest = data_path.parent / PARTS_DIGEST_FILE  # a dataset of parts, joined (ml.job.join_parts)
    sha = digest.read_text(encoding="utf-8").strip() if digest.is_file() else sha256_file(data_path)
    expected = hps.get("dataset_sha256") or ""
    if expected and sha != expected:
        raise DatasetRejectedError(
            f"the dataset changed after it was validated: SHA-256 {sha[:12]}... is not the {expected[:12]}... "
            "the job was started for (upload it again to train on the new content)"
        )
    # The bytes the stage validated (same SHA-256) were judged against the stack's own limits
    # (template.yaml MAX_*): here only the structure is re-checked, so raising a limit there never
    # makes an accepted dataset fail its job. Unverified input gets the default limits.
    limits = (
        Limits(max_bytes=2**62, max_rows=2**62, max_missing_rate=1.0, max_duplicate_rate=1.0)
        if expected
        else None
    )
    pinned = pinned_schema(data_path)
    data = (
        load_csv(data_path, spec, limits)
        if pinned is None
        else load_csv(data_path, spec, limits, schema=pinned)
    )
    if pinned is not None:
        _check_pinned(pinned, data)
    return sha, data


def train(
    data_path: str | Path,
    spec: ModelSpec,
    model_dir: str | Path,
    *,
    hyperparameters: Mapping[str, str] | None = None,
    output_data_dir: str | Path | None = None,
    mixed_precision: bool = False,
    log: Log = print_line,
    trial: TrialHook | None = None,
    record_extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Train on the CSV at ``data_path`` and write the model dir; returns the held-out metrics.

    Raises ``DatasetRejectedError`` when the file does not validate or is not the dataset the job was
    started for (``hyperparameters["dataset_sha256"]``). With ``trial`` it is one trial of a search
    (:class:`TrialHook`); ``record_extra`` is merged into ``training_record.json``.
    """
    started = time.time()
    hps = dict(hyperparameters or {})
    data_path, model_dir = Path(data_path), Path(model_dir)
    sha, data = check_dataset(data_path, spec, hps)
    device = _configure_tf(spec.training.seed, mixed_precision)

    import keras
    import tensorflow as tf

    t = spec.training
    n_classes = len(data.classes or [])
    train_idx, val_idx = split_indices(len(data.y), t.validation_split, t.seed)
    schema = input_schema(data, spec, train_idx, pinned_schema(data_path))
    x_all = index_matrix(data, schema) if schema.categorical else data.x
    x_raw_train = x_all[train_idx]
    means = np.nanmean(np.where(np.isnan(x_raw_train).all(axis=0), 0.0, x_raw_train), axis=0)
    means = np.nan_to_num(means, nan=0.0)
    x = np.where(np.isnan(x_all), means, x_all).astype(np.float32)
    x_train, x_val = x[train_idx], x[val_idx]
    y = data.y.astype(np.float32) if spec.task == "regression" else data.y.astype(np.int64)
    y_train, y_val = y[train_idx], y[val_idx]

    # early stopping watches a slice of the training rows, never the held-out split
    n_es = round(len(train_idx) * EARLY_STOP_SHARE) if len(train_idx) >= MIN_ROWS_FOR_EARLY_STOP_SPLIT else 0
    es_perm = np.random.default_rng(t.seed + 1).permutation(len(train_idx))
    fit_rows, es_rows = np.sort(es_perm[n_es:]), np.sort(es_perm[:n_es])
    y_mean = float(np.mean(y_train[fit_rows])) if spec.task == "regression" else 0.0
    y_std = float(np.std(y_train[fit_rows])) if spec.task == "regression" else 1.0
    model = build_model(spec, x_train[fit_rows], n_classes, y_mean, y_std if y_std > 0 else 1.0, schema)

    monitor = "val_loss" if n_es else "loss"
    callbacks = [
        keras.callbacks.EarlyStopping(
            monitor=monitor, patience=t.early_stopping_patience, restore_best_weights=True
        ),
        _epoch_logger(t.epochs, log),
    ]
    if trial is not None:
        # the objective is measured on the selection rows (the early-stopping slice of the training rows);
        # with too few rows for that slice, on the rows it trains on. Never on the held-out split.
        sel = es_rows if n_es else fit_rows
        callbacks.append(_trial_callback(trial, spec, x_train[sel], y_train[sel], log))
    history = model.fit(
        x_train[fit_rows],
        y_train[fit_rows],
        validation_data=(x_train[es_rows], y_train[es_rows]) if n_es else None,
        epochs=t.epochs,
        batch_size=t.batch_size,
        shuffle=True,
        callbacks=callbacks,
        verbose=0,
    )
    hist = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    epochs_run = len(hist.get("loss", []))
    best_epoch = int(np.argmin(hist[monitor])) + 1 if hist.get(monitor) else epochs_run
    objective: dict[str, Any] | None = None
    if trial is not None:
        trial.epochs_run = epochs_run
        if trial.pruned:
            last = trial.values[-1] if trial.values else math.nan
            raise TrialPrunedError(
                f"pruned after {epochs_run} epochs ({searching.objective_name(trial.metric)}={last:.6g})",
                epochs_run=epochs_run,
            )
        sel = es_rows if n_es else fit_rows
        out_sel = np.asarray(model.predict(x_train[sel], batch_size=1024, verbose=0), dtype=np.float64)
        trial.final = objective_value(spec, trial.metric, y_train[sel], out_sel)
        log(f"{searching.objective_name(trial.metric)}={trial.final:.6g}")
        objective = {
            "metric": trial.metric,
            "name": searching.objective_name(trial.metric),
            "split": "selection" if n_es else "training",
            "rows": int(len(sel)),
            "value": trial.final if math.isfinite(trial.final) else None,
            "per_epoch": [v if math.isfinite(v) else None for v in trial.values],
        }

    out_val = np.asarray(model.predict(x_val, batch_size=1024, verbose=0), dtype=np.float64)
    out_train = np.asarray(model.predict(x_train, batch_size=1024, verbose=0), dtype=np.float64)
    if spec.task == "regression":
        metrics: dict[str, Any] = regression_metrics(y_val, out_val[:, 0])
        train_prediction = out_train[:, 0]
    else:
        metrics = classification_metrics(y_val, out_val)
        train_prediction = out_train[:, 0] if spec.task == "binary" else np.argmax(out_train, axis=1)
    metrics.update(constant_baseline(spec, y_train, y_val, n_classes))
    metrics["n_val"] = int(len(val_idx))
    metrics["n_train"] = int(len(train_idx))
    for name, value in metrics.items():
        if not name.startswith("n_") and value is not None:
            log(f"validation:{name}={value:.6g}")

    model_dir.mkdir(parents=True, exist_ok=True)
    try:
        model.export(str(model_dir / "saved_model"), format="tf_saved_model", verbose=False)
    except TypeError:  # Keras before 3.5 (the AWS TF 2.16 image) has no ``verbose``
        model.export(str(model_dir / "saved_model"), format="tf_saved_model")
    schema_doc = {
        "task": spec.task,
        "target": spec.target,
        "features": schema.to_list(),
        "classes": data.classes,
    }
    baseline = compute_baseline(x_raw_train, list(schema.names), train_prediction, seed=t.seed, schema=schema)
    # plain float32 arrays: readable with np.load(..., allow_pickle=False)
    np.savez(model_dir / "heldout.npz", x=x_val.astype(np.float32), y=y_val.astype(np.float32))
    report = data.report.to_dict()
    record = {
        "job": hps.get("job"),
        "model": hps.get("model"),
        "dataset": {
            "uri": hps.get("dataset_uri"),
            "version_id": hps.get("dataset_version_id") or None,
            "sha256": sha,
            "rows": int(len(data.y)),
        },
        "hyperparameters": hps,
        "spec": spec.model_dump(mode="json"),
        "frameworks": {
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "device": device,
        "epochs_run": epochs_run,
        "best_epoch": best_epoch,
        "history": hist,
        "split": {
            "seed": t.seed,
            "n_train": int(len(train_idx)),
            "n_val": int(len(val_idx)),
            "n_early_stopping": int(n_es),
        },
        "imputation": {
            f.name: float(m) for f, m in zip(schema.features, means, strict=True) if not f.categorical
        },
        "validation": {
            k: report[k]
            for k in ("rows", "duplicate_rate", "max_missing_rate", "missing", "excluded_columns")
        },
        "duration_s": round(time.time() - started, 3),
    }
    if objective is not None:
        record["objective"] = objective
    record.update(record_extra or {})
    write_json(model_dir / "metrics.json", metrics)
    write_json(model_dir / "schema.json", schema_doc)
    write_json(model_dir / "baseline.json", baseline)
    write_json(model_dir / "training_record.json", record)
    if output_data_dir is not None:
        Path(output_data_dir).mkdir(parents=True, exist_ok=True)
        write_json(Path(output_data_dir) / "metrics.json", metrics)
    log(
        f"trained {spec.task} model on {len(train_idx)} rows in {record['duration_s']}s ({epochs_run} epochs, {device['device']})"
    )
    return metrics


def write_json(path: Path, doc: Any) -> None:
    path.write_text(json.dumps(doc, indent=1, sort_keys=True, allow_nan=False))

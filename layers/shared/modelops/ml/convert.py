"""SavedModel -> LiteRT (``.tflite``), parity against the SavedModel, serving budget (docs/convert.md).

TensorFlow and the LiteRT interpreter are imported inside the functions that need them, so the
numpy helper here (:func:`compare_outputs`) stays cheap to import and test. The promotion metric of each
model's outputs is :func:`modelops.domain.metrics.score` (the trainer's and the monitor's definitions).

- Conversion uses only ``TFLITE_BUILTINS`` (the ops the predict runtime has); a model that needs
  TF Select ops fails with :class:`UnsupportedOpError` naming them.
- ``dynamic_int8`` adds ``model.int8.tflite`` (``tf.lite.Optimize.DEFAULT``: int8 weights, float
  activations).
- Parity: the SavedModel's ``serving_default`` signature and each ``.tflite`` (through
  ``ai_edge_litert``, the runtime predict uses) run on the held-out rows. Float32 passes when every
  output satisfies ``|Δ| <= tolerance * max(1, |reference|)`` (absolute for outputs of magnitude up
  to 1, relative beyond, so a regression target in the thousands is not failed for float32
  rounding). int8 is not gated: its metric delta is recorded.
- Serving budget: ``.tflite`` size and the median single-row latency (``set_tensor``, ``invoke``,
  ``get_tensor`` on one thread, as predict does), each checked against a limit.
- What LiteRT can serve (:func:`check_builtin_ops`): every converted model's operator codes are read
  from its flatbuffer; a custom op (Flex ops are custom ops named ``Flex...``) is refused naming it.
- Tensor models (:func:`convert_tensors`: several named inputs and outputs,
  ``modelops.domain.signature``): the SavedModel's ``serving_default`` signature is the schema
  (:func:`savedmodel_signature`, which refuses a dynamic dimension other than the batch, naming the
  input and the dimension); parity is measured for every output.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np

from modelops.domain.errors import ConversionError, ParityError, ServingBudgetError, UnsupportedOpError
from modelops.domain.metrics import predicted_labels, score
from modelops.domain.signature import DTYPES, Signature, SignatureError
from modelops.domain.spec import LOWER_IS_BETTER

SIGNATURE = "serving_default"


@dataclass(frozen=True)
class Limits:
    """Serving budget and parity effort."""

    max_tflite_bytes: int = 100 * 1024 * 1024
    max_single_row_latency_us: float = 50_000.0
    latency_calls: int = 200
    parity_max_rows: int = 10_000


@dataclass
class ConvertOutput:
    tflite: bytes
    tflite_int8: bytes | None
    parity: dict[str, Any]
    serving_budget: dict[str, Any]
    frameworks: dict[str, str]
    seconds: dict[str, float] = field(default_factory=dict)
    reference: dict[str, np.ndarray] | None = None
    """Tensor models: the SavedModel's outputs on the sample, by output name (the baseline's outputs)."""


# ---------------------------------------------------------------------------- numpy helpers
def compare_outputs(
    reference: np.ndarray, got: np.ndarray, *, task: str, tolerance: float | None = None
) -> dict[str, Any]:
    """Max/mean |Δ| between two output arrays, the scaled check, and label agreement (classification).

    Non-finite values count as an infinite difference unless both sides are NaN at the same place.
    """
    ref = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    out = np.asarray(got, dtype=np.float64).reshape(len(got), -1)
    if ref.shape != out.shape:
        raise ParityError(
            f"output shapes differ: SavedModel {ref.shape}, tflite {out.shape}",
            {"savedmodel_shape": list(ref.shape), "tflite_shape": list(out.shape)},
        )
    with np.errstate(invalid="ignore"):
        diff = np.abs(ref - out)
    both_nan = np.isnan(ref) & np.isnan(out)
    diff[both_nan] = 0.0
    diff[~np.isfinite(diff)] = np.inf
    scaled = diff / np.maximum(1.0, np.abs(np.nan_to_num(ref, nan=0.0, posinf=0.0, neginf=0.0)))
    result: dict[str, Any] = {
        "rows": int(ref.shape[0]),
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
        "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
        "max_scaled_diff": float(scaled.max()) if scaled.size else 0.0,
    }
    labels_ref, labels_out = predicted_labels(task, ref), predicted_labels(task, out)
    if labels_ref is not None and labels_out is not None:
        result["label_agreement"] = float(np.mean(labels_ref == labels_out)) if len(labels_ref) else 1.0
    if tolerance is not None:
        result["tolerance"] = float(tolerance)
        result["passed"] = bool(result["max_scaled_diff"] <= tolerance)
    return result


# ---------------------------------------------------------------------------- TensorFlow side
def _unsupported_ops(exc: Exception) -> list[str]:
    ops: set[str] = set()
    for err in getattr(exc, "errors", None) or []:
        name = getattr(getattr(err, "operator", None), "name", "")
        if name:
            ops.add(str(name))
    if not ops:
        import re

        text = str(exc)
        for m in re.finditer(r"TF Select ops: ([^\n]+)", text):
            ops.update(f"tf.{o.strip()}" for o in m.group(1).split(",") if o.strip())
        ops.update(re.findall(r"'(tf\.\w+)' op is neither a custom op nor a flex op", text))
    return sorted(ops)


def to_tflite(saved_model_dir: str | os.PathLike[str], *, quantize: bool = False) -> bytes:
    """Convert the ``serving_default`` signature with builtin ops only."""
    import tensorflow as tf

    try:
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir), signature_keys=[SIGNATURE])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        return bytes(converter.convert())
    except Exception as exc:  # the converter raises ConverterError, ValueError, RuntimeError...
        ops = _unsupported_ops(exc)
        if ops:
            raise UnsupportedOpError(
                f"the model uses operations that LiteRT's builtin op set lacks: {', '.join(ops)} "
                "(they would need TF Select, which the predict runtime does not ship)",
                ops,
            ) from exc
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise ConversionError(f"SavedModel could not be converted to tflite: {first[:500]}") from exc


def tflite_ops(model: bytes) -> tuple[list[str], list[str]]:
    """(builtin op names, custom op names) a ``.tflite`` flatbuffer's operator codes name."""
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    root = schema.Model.GetRootAs(model, 0)
    builtin: set[str] = set()
    custom: set[str] = set()
    for i in range(root.OperatorCodesLength()):
        oc = root.OperatorCodes(i)
        code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
        if code == schema.BuiltinOperator.CUSTOM:
            raw = oc.CustomCode()
            custom.add(raw.decode("utf-8", "replace") if raw else "<unnamed custom op>")
        else:
            builtin.add(names.get(code, f"BUILTIN_{code}"))
    return sorted(builtin), sorted(custom)


def check_builtin_ops(model: bytes) -> list[str]:
    """The builtin ops of a converted model; :class:`UnsupportedOpError` naming any other op (a Flex
    op, ``Flex`` + the TensorFlow op's name, or a custom op: the predict runtime has neither)."""
    builtin, custom = tflite_ops(model)
    if custom:
        flex = [f"tf.{c[4:]}" if c.startswith("Flex") else c for c in custom]
        raise UnsupportedOpError(
            f"the converted model uses operations outside LiteRT's builtin op set: {', '.join(flex)} "
            "(Flex/TF Select and custom ops are not in the predict runtime)",
            flex,
        )
    return builtin


def savedmodel_signature(saved_model_dir: str | os.PathLike[str]) -> Signature:
    """The ``serving_default`` signature's inputs and outputs (shapes without the batch); a dynamic
    dimension other than the batch, an unsupported dtype or a missing batch dimension is refused
    (:class:`ConversionError` naming the input or output and the dimension)."""
    import tensorflow as tf

    try:
        fn = tf.saved_model.load(str(saved_model_dir)).signatures[SIGNATURE]
    except (KeyError, OSError, ValueError) as exc:
        raise ConversionError(f"SavedModel has no usable {SIGNATURE!r} signature: {exc}") from exc
    _, kwargs = fn.structured_input_signature
    outputs = fn.structured_outputs
    if not isinstance(outputs, dict):
        outputs = {"output_0": outputs}
    docs: dict[str, list[dict[str, Any]]] = {"inputs": [], "outputs": []}
    for kind, specs in (("input", kwargs), ("output", outputs)):
        for name, spec in sorted(specs.items()):  # by name: TensorFlow keeps no order
            shape = spec.shape.as_list() if spec.shape.rank is not None else None
            if shape is None or not shape:
                raise ConversionError(
                    f"the serving signature's {kind} {name!r} has shape {shape}; it needs a batch dimension "
                    "(dimension 0) and fixed others"
                )
            dynamic = [k for k, d in enumerate(shape) if d is None and k > 0]
            if dynamic:
                raise ConversionError(
                    f"the serving signature's {kind} {name!r} has shape {shape}: dimension {dynamic[0]} is "
                    "dynamic (None); LiteRT serves a dynamic batch (dimension 0) only: give every other "
                    "dimension a fixed size in the signature"
                )
            dtype = spec.dtype.name
            if dtype not in DTYPES:
                raise ConversionError(
                    f"the serving signature's {kind} {name!r} is {dtype}; predict serves {', '.join(DTYPES)}"
                )
            docs[f"{kind}s"].append({"name": name, "shape": shape[1:], "dtype": dtype})
    try:
        sig = Signature.from_schema(docs)
    except SignatureError as exc:
        raise ConversionError(f"the serving signature cannot be served: {exc}") from None
    assert sig is not None
    return sig


def run_savedmodel_tensors(
    saved_model_dir: str | os.PathLike[str], inputs: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The SavedModel's ``serving_default`` outputs by name for named inputs."""
    import tensorflow as tf

    fn = tf.saved_model.load(str(saved_model_dir)).signatures[SIGNATURE]
    try:
        out = fn(**{k: tf.constant(v) for k, v in inputs.items()})
    except (tf.errors.OpError, TypeError, ValueError) as exc:
        raise ConversionError(f"the SavedModel cannot run the sample inputs: {exc}") from exc
    return {k: np.asarray(v.numpy()) for k, v in out.items()}


def run_tflite_tensors(model: bytes, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The ``.tflite``'s outputs by name through its ``serving_default`` signature runner."""
    runner = _interpreter(model).get_signature_runner(SIGNATURE)
    try:
        out = runner(**inputs)
    except (RuntimeError, ValueError) as exc:
        raise ConversionError(f"the tflite model cannot run the sample inputs: {exc}") from exc
    return {k: np.asarray(v) for k, v in out.items()}


def _tensor_latency_us(
    model: bytes, inputs: dict[str, np.ndarray], calls: int, warmup: int = 10
) -> dict[str, float]:
    runner = _interpreter(model).get_signature_runner(SIGNATURE)
    one = {k: np.ascontiguousarray(v[:1]) for k, v in inputs.items()}
    samples = []
    for i in range(warmup + calls):
        t0 = time.perf_counter_ns()
        runner(**one)
        if i >= warmup:
            samples.append((time.perf_counter_ns() - t0) / 1000.0)
    samples.sort()
    return {"median": statistics.median(samples), "p90": samples[int(0.9 * (len(samples) - 1))]}


def convert_tensors(
    saved_model_dir: str | os.PathLike[str],
    inputs: dict[str, np.ndarray],
    *,
    task: str,
    quantize: str = "none",
    parity_tolerance: float = 1e-4,
    limits: Limits | None = None,
) -> tuple[ConvertOutput, Signature]:
    """A tensor model: its signature (the schema), conversion with builtin ops only, parity of every
    output on the sample ``inputs`` (by input name, batch first), the serving budget."""
    limits = limits or Limits()
    seconds: dict[str, float] = {}
    sig = savedmodel_signature(saved_model_dir)
    sample: dict[str, np.ndarray] = {}
    for spec in sig.inputs:
        if spec.name not in inputs:
            raise ConversionError(
                f"the sample lacks input {spec.name!r}; the signature takes {sig.describe_inputs()}"
            )
        a = np.ascontiguousarray(inputs[spec.name][: limits.parity_max_rows], dtype=DTYPES[spec.dtype])
        if a.ndim == 0 or tuple(a.shape[1:]) != spec.shape or len(a) == 0:
            raise ConversionError(
                f"the sample of input {spec.name!r} has shape {list(a.shape)}; the signature takes "
                f"[rows, {', '.join(map(str, spec.shape))}]"
            )
        sample[spec.name] = a
    rows = {len(a) for a in sample.values()}
    if len(rows) != 1:
        raise ConversionError(f"the sample's inputs have different numbers of rows: {sorted(rows)}")
    t0 = time.perf_counter()
    tflite = to_tflite(saved_model_dir)
    ops = check_builtin_ops(tflite)
    seconds["convert_float32"] = time.perf_counter() - t0
    int8: bytes | None = None
    if quantize == "dynamic_int8":
        int8 = to_tflite(saved_model_dir, quantize=True)
        check_builtin_ops(int8)
    t0 = time.perf_counter()
    reference = run_savedmodel_tensors(saved_model_dir, sample)
    out32 = run_tflite_tensors(tflite, sample)
    one = len(sig.outputs) == 1
    per = {
        s.name: compare_outputs(
            reference[s.name], out32[s.name], task=task if one else "regression", tolerance=parity_tolerance
        )
        for s in sig.outputs
    }
    f32: dict[str, Any] = {
        "rows": rows.pop(),
        "max_abs_diff": max(p["max_abs_diff"] for p in per.values()),
        "mean_abs_diff": max(p["mean_abs_diff"] for p in per.values()),
        "max_scaled_diff": max(p["max_scaled_diff"] for p in per.values()),
        "tolerance": float(parity_tolerance),
        "passed": all(p["passed"] for p in per.values()),
        "outputs": per,
    }
    parity: dict[str, Any] = {"rows": f32["rows"], "tolerance": float(parity_tolerance), "float32": f32}
    if not f32["passed"]:
        bad = [
            f"{n} (max |Δ| {p['max_abs_diff']:.3g}, scaled {p['max_scaled_diff']:.3g})"
            for n, p in per.items()
            if not p["passed"]
        ]
        raise ParityError(
            f"float32 tflite does not match the SavedModel on output {', '.join(bad)} > tolerance "
            f"{parity_tolerance:.3g} on {f32['rows']} sample rows",
            parity,
        )
    if int8 is not None:
        out8 = run_tflite_tensors(int8, sample)
        parity["int8"] = {
            "outputs": {
                s.name: compare_outputs(reference[s.name], out8[s.name], task=task if one else "regression")
                for s in sig.outputs
            }
        }
    seconds["parity"] = time.perf_counter() - t0
    lat = _tensor_latency_us(tflite, sample, calls=limits.latency_calls)
    budget: dict[str, Any] = {
        "tflite_bytes": len(tflite),
        "single_row_latency_us": round(lat["median"], 2),
        "single_row_latency_p90_us": round(lat["p90"], 2),
        "latency_calls": limits.latency_calls,
        "max_tflite_bytes": limits.max_tflite_bytes,
        "max_single_row_latency_us": limits.max_single_row_latency_us,
        "ops": ops,
    }
    check_serving_budget(len(tflite), lat["median"], limits, budget)
    return ConvertOutput(tflite, int8, parity, budget, frameworks(), seconds, reference), sig


def export_keras(keras_file: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> Path:
    """A ``.keras`` file loaded with Keras and exported as a SavedModel (``serving_default``) into
    ``out_dir``; :class:`ConversionError` when Keras cannot load or export it."""
    import keras

    target = Path(out_dir)
    try:
        model = keras.models.load_model(str(keras_file), compile=False)
        try:
            model.export(str(target), format="tf_saved_model", verbose=False)
        except TypeError:  # Keras before 3.5 has no ``verbose``
            model.export(str(target), format="tf_saved_model")
    except Exception as exc:  # Keras raises ValueError, TypeError, OSError...
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise ConversionError(f"the .keras file cannot be loaded and exported: {first[:500]}") from exc
    return target


def _signature_io(fn: Any) -> tuple[str, str | None]:
    _, kwargs = fn.structured_input_signature
    if len(kwargs) != 1:
        raise ConversionError(f"the serving signature must take exactly one input, it takes {sorted(kwargs)}")
    outputs = fn.structured_outputs
    out_name = None
    if isinstance(outputs, dict):
        if len(outputs) != 1:
            raise ConversionError(
                f"the serving signature must have exactly one output, it has {sorted(outputs)}"
            )
        out_name = next(iter(outputs))
    return next(iter(kwargs)), out_name


def run_savedmodel(saved_model_dir: str | os.PathLike[str], x: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(saved_model_dir))
        fn = loaded.signatures[SIGNATURE]
    except (KeyError, OSError, ValueError) as exc:
        raise ConversionError(f"SavedModel has no usable {SIGNATURE!r} signature: {exc}") from exc
    in_name, out_name = _signature_io(fn)
    try:
        out = fn(**{in_name: tf.constant(x)})
    except (tf.errors.OpError, TypeError, ValueError) as exc:
        raise ConversionError(
            f"the SavedModel cannot run the held-out rows (shape {x.shape}): {exc}"
        ) from exc
    value = out[out_name] if out_name is not None else out
    return np.asarray(value.numpy())


def _interpreter(model: bytes) -> Any:
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_content=model, num_threads=1)


def run_tflite(model: bytes, x: np.ndarray) -> np.ndarray:
    """Run a whole batch through the model's serving signature."""
    interp = _interpreter(model)
    runner = interp.get_signature_runner(SIGNATURE)
    details = runner.get_input_details()
    if len(details) != 1:
        raise ConversionError(f"the tflite model must take exactly one input, it takes {sorted(details)}")
    try:
        out = runner(**{next(iter(details)): x})
    except (RuntimeError, ValueError) as exc:
        raise ConversionError(
            f"the tflite model cannot run the held-out rows (shape {x.shape}): {exc}"
        ) from exc
    if len(out) != 1:
        raise ConversionError(f"the tflite model must have exactly one output, it has {sorted(out)}")
    return np.asarray(next(iter(out.values())))


def check_serving_budget(
    tflite_bytes: int, latency_us: float, limits: Limits, budget: dict[str, Any]
) -> None:
    """``ServingBudgetError`` naming every limit the converted model is over (size, single-row latency)."""
    over = []
    if tflite_bytes > limits.max_tflite_bytes:
        over.append(f"model.tflite is {tflite_bytes} bytes (limit {limits.max_tflite_bytes})")
    if latency_us > limits.max_single_row_latency_us:
        over.append(
            f"single-row latency {latency_us:.0f} µs (limit {limits.max_single_row_latency_us:.0f} µs)"
        )
    if over:
        raise ServingBudgetError("over the serving budget: " + "; ".join(over), {"serving_budget": budget})


def single_row_latency_us(
    model: bytes, row: np.ndarray, calls: int = 200, warmup: int = 20
) -> dict[str, float]:
    """Median and p90 of ``set_tensor`` + ``invoke`` + ``get_tensor`` for one row (one thread)."""
    interp = _interpreter(model)
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    row = np.ascontiguousarray(row.reshape(1, -1), dtype=np.float32)
    interp.resize_tensor_input(inp["index"], list(row.shape))
    interp.allocate_tensors()
    samples = []
    for i in range(warmup + calls):
        t0 = time.perf_counter_ns()
        interp.set_tensor(inp["index"], row)
        interp.invoke()
        interp.get_tensor(out["index"])
        if i >= warmup:
            samples.append((time.perf_counter_ns() - t0) / 1000.0)
    samples.sort()
    return {"median": statistics.median(samples), "p90": samples[int(0.9 * (len(samples) - 1))]}


def frameworks() -> dict[str, str]:
    out = {}
    for dist in ("tensorflow-cpu", "tensorflow", "ai-edge-litert", "numpy", "keras"):
        try:
            out[dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            continue
    return out


def convert_and_verify(
    saved_model_dir: str | os.PathLike[str],
    x: np.ndarray,
    y: np.ndarray | None,
    *,
    task: str,
    metric: str,
    quantize: str = "none",
    parity_tolerance: float = 1e-4,
    limits: Limits | None = None,
) -> ConvertOutput:
    """Convert, check float32 parity (raise :class:`ParityError`), measure int8, check the budget.
    ``y`` None (rows without targets: a script model's training rows used for parity only): no metric."""
    limits = limits or Limits()
    saved_model_dir = Path(saved_model_dir)
    x = np.ascontiguousarray(x[: limits.parity_max_rows], dtype=np.float32)
    labelled = y is not None
    y = np.asarray(y[: limits.parity_max_rows]) if y is not None else np.zeros(len(x), dtype=np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise ConversionError(f"held-out rows must be a non-empty 2-D array, got shape {x.shape}")
    seconds: dict[str, float] = {}

    t0 = time.perf_counter()
    tflite = to_tflite(saved_model_dir)
    check_builtin_ops(tflite)
    seconds["convert_float32"] = time.perf_counter() - t0
    int8: bytes | None = None
    if quantize == "dynamic_int8":
        t0 = time.perf_counter()
        int8 = to_tflite(saved_model_dir, quantize=True)
        seconds["convert_int8"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    reference = run_savedmodel(saved_model_dir, x)
    out32 = run_tflite(tflite, x)
    f32 = compare_outputs(reference, out32, task=task, tolerance=parity_tolerance)
    ref_metric = score(task, metric, y, reference) if labelled else None
    f32_metric = score(task, metric, y, out32) if labelled else None
    f32["metric"] = {
        "name": metric,
        "savedmodel": ref_metric,
        "tflite": f32_metric,
        "delta": None if ref_metric is None or f32_metric is None else f32_metric - ref_metric,
    }
    parity: dict[str, Any] = {"rows": int(len(x)), "tolerance": float(parity_tolerance), "float32": f32}
    if not f32["passed"]:
        raise ParityError(
            f"float32 tflite does not match the SavedModel: max |Δ| {f32['max_abs_diff']:.3g} "
            f"(scaled {f32['max_scaled_diff']:.3g}) > tolerance {parity_tolerance:.3g} on {len(x)} held-out rows",
            parity,
        )
    if int8 is not None:
        out8 = run_tflite(int8, x)
        i8 = compare_outputs(reference, out8, task=task)
        i8_metric = score(task, metric, y, out8) if labelled else None
        delta = None if i8_metric is None or f32_metric is None else i8_metric - f32_metric
        worse = None
        if delta is not None:
            worse = delta > 0 if LOWER_IS_BETTER[metric] else delta < 0
        i8["metric"] = {"name": metric, "tflite_int8": i8_metric, "delta_vs_float32": delta, "worse": worse}
        parity["int8"] = i8
    seconds["parity"] = time.perf_counter() - t0

    lat = single_row_latency_us(tflite, x[:1], calls=limits.latency_calls)
    budget: dict[str, Any] = {
        "tflite_bytes": len(tflite),
        "single_row_latency_us": round(lat["median"], 2),
        "single_row_latency_p90_us": round(lat["p90"], 2),
        "latency_calls": limits.latency_calls,
        "max_tflite_bytes": limits.max_tflite_bytes,
        "max_single_row_latency_us": limits.max_single_row_latency_us,
    }
    if int8 is not None:
        lat8 = single_row_latency_us(int8, x[:1], calls=limits.latency_calls)
        budget["tflite_int8_bytes"] = len(int8)
        budget["int8_single_row_latency_us"] = round(lat8["median"], 2)
    check_serving_budget(len(tflite), lat["median"], limits, budget)
    return ConvertOutput(tflite, int8, parity, budget, frameworks(), seconds)

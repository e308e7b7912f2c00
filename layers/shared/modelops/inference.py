"""Running a verified LiteRT model: what predict serves with and what the promotion gate scores with.

One room for the part both need (docs/architecture.md): which artifact of a version serves
(:func:`serving_role`), what the manifest says about its inputs (:func:`model_info`), and
:class:`LoadedModel`, the LiteRT interpreters over a ``.tflite`` file that the caller has already
verified against the manifest's SHA-256 (predict: ``ModelCache._fetch``; the gate:
``Registry.read_artifact``). :func:`check_identifier` refuses a file that is not a TFLite flatbuffer
before LiteRT parses it; :func:`predict_rows` runs any number of rows in bounded batches.

It imports LiteRT and numpy, never the registry: a manifest is anything with ``model``, ``version``,
``artifacts`` and ``get`` (:class:`ManifestLike`, which ``modelops.storage.registry.Manifest`` is).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from modelops.domain.encoding import Feature, InputSchema, SchemaError
from modelops.domain.errors import CorruptDocumentError

if TYPE_CHECKING:  # the tensor path imports it when a tensor model is served
    from modelops.domain.signature import Signature, TensorSpec

TFLITE_IDENTIFIER = b"TFL3"
TASKS = frozenset({"regression", "binary", "multiclass"})
PREDICT_CHUNK_ROWS = 4096
"""Rows per interpreter call in :func:`predict_rows` (bounds the interpreter's tensors)."""


class ArtifactLike(Protocol):
    @property
    def file(self) -> str: ...
    @property
    def sha256(self) -> str: ...


class ManifestLike(Protocol):
    """What :func:`model_info` reads of a version's manifest (``modelops.storage.registry.Manifest``)."""

    @property
    def model(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def artifacts(self) -> Mapping[str, ArtifactLike]: ...
    def get(self, key: str, default: Any = None) -> Any: ...


InterpreterFactory = Callable[[str], Any]


def litert_interpreter(path: str) -> Any:
    """One single-threaded LiteRT interpreter (Lambda gives predict about one vCPU)."""
    return Interpreter(model_path=path, num_threads=1)


@dataclass(frozen=True)
class ModelInfo:
    """What the API needs to know about a served version (from its manifest).

    ``schema`` is the version's input schema (``modelops.domain.encoding``; every feature numeric
    when not given, as for versions before categorical features); ``categorical`` says whether any
    feature takes categories (predict's string path), kept as a field: the numeric path reads it once
    per request. ``signature`` is a tensor model's named inputs and outputs
    (``modelops.domain.signature``; ``features`` are then its input names) and ``tensor`` says it has
    one (predict's tensor path), read, like ``categorical``, once per request."""

    model: str
    version: int
    task: str
    features: tuple[str, ...]
    classes: tuple[Any, ...] | None
    capture_sample_rate: float
    role: str
    sha256: str
    schema: InputSchema | None = None
    signature: Signature | None = None
    categorical: bool = field(init=False, default=False)
    tensor: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        schema = self.schema
        if schema is None:
            schema = InputSchema(tuple(Feature(name) for name in self.features))
            object.__setattr__(self, "schema", schema)
        elif schema.names != self.features:
            raise ValueError("the schema's features are not the model's features")
        object.__setattr__(self, "categorical", schema.categorical)
        if self.signature is not None:
            if self.signature.input_names != self.features:
                raise ValueError("the signature's inputs are not the model's features")
            object.__setattr__(self, "tensor", True)

    @property
    def n_features(self) -> int:
        return len(self.features)

    @property
    def input_schema(self) -> InputSchema:
        """``schema``, typed as set (``__post_init__`` always sets it)."""
        assert self.schema is not None
        return self.schema


def model_info(manifest: ManifestLike) -> ModelInfo:
    """Parse the serving-relevant fields of a manifest; ``CorruptDocumentError`` when they are unusable."""
    where = f"manifest of {manifest.model} v{manifest.version}"
    schema = manifest.get("schema")
    if not isinstance(schema, dict):
        raise CorruptDocumentError(f"{where} has no schema")
    task = manifest.get("task") or schema.get("task")
    if task not in TASKS:
        raise CorruptDocumentError(f"{where}: unknown task {str(task)[:40]!r}")
    signature: Signature | None = None
    try:
        if "inputs" in schema:  # a tensor model (modelops.domain.signature, imported only for one)
            from modelops.domain.signature import Signature as _Signature

            signature = _Signature.from_schema(schema)
        if signature is None:
            input_schema = InputSchema.from_dict(schema)
        else:
            input_schema = InputSchema(tuple(Feature(name) for name in signature.input_names))
    except (SchemaError, ValueError) as exc:  # SignatureError is a ValueError
        raise CorruptDocumentError(f"{where}: {exc}") from None
    classes = schema.get("classes")
    if classes is not None and (not isinstance(classes, list) or len(classes) < 2):
        raise CorruptDocumentError(f"{where}: schema.classes must be a list of at least two labels or null")
    if task == "regression":
        classes = None
    rate: Any = 1.0
    spec = manifest.get("spec")
    if isinstance(spec, dict) and isinstance(spec.get("monitoring"), dict):
        rate = spec["monitoring"].get("capture_sample_rate", 1.0)
    if not isinstance(rate, int | float) or isinstance(rate, bool) or not 0.0 <= float(rate) <= 1.0:
        rate = 1.0
    role = serving_role(manifest)
    return ModelInfo(
        model=manifest.model,
        version=manifest.version,
        task=str(task),
        features=input_schema.names,
        classes=tuple(classes) if classes is not None else None,
        capture_sample_rate=float(rate),
        role=role,
        sha256=manifest.artifacts[role].sha256,
        schema=input_schema,
        signature=signature,
    )


def serving_role(manifest: ManifestLike) -> str:
    """``tflite_int8`` when the spec asked for dynamic int8 and the version has it, else ``tflite``."""
    spec = manifest.get("spec")
    conversion = spec.get("conversion") if isinstance(spec, dict) else None
    quantize = conversion.get("quantize") if isinstance(conversion, dict) else None
    if quantize == "dynamic_int8" and "tflite_int8" in manifest.artifacts:
        role = "tflite_int8"
    elif "tflite" in manifest.artifacts:
        role = "tflite"
    else:
        raise CorruptDocumentError(f"{manifest.model} v{manifest.version} has no .tflite artifact")
    if not manifest.artifacts[role].file.endswith(".tflite"):
        raise CorruptDocumentError(
            f"{manifest.model} v{manifest.version}: the {role} artifact is not a .tflite file"
        )
    return role


class LoadedModel:
    """A verified .tflite file behind LiteRT interpreters.

    Single rows use an interpreter allocated once for a batch of one (the minimal path: set_tensor,
    invoke, get_tensor). Batches use a second interpreter (both are built at load, from the file
    that was just verified) resized to the batch size, which is kept
    allocated until a batch of another size comes. Invocations are serialised by a lock (an
    interpreter is not thread-safe; the local twin serves requests from threads).
    """

    def __init__(self, info: ModelInfo, path: Path, factory: InterpreterFactory):
        self.info = info
        self.path = path
        self._factory = factory
        self._lock = threading.Lock()
        self._single = factory(str(path))
        self.answer_bound: tuple[int, int, int] | None = None
        """(fixed, per row) bytes of an answer (``render.answer_bound``, ``render.tensor_answer_bound``
        for a tensor model) and the rows that always fit: the service's, kept here
        (``PredictService._answer_bound``)."""
        if info.signature is not None:
            self._runner = _TensorRunner(self._single, info.signature)
            self.n_outputs = sum(s.size for s in info.signature.outputs)
            return
        inputs = self._single.get_input_details()
        outputs = self._single.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(
                f"the model has {len(inputs)} inputs and {len(outputs)} outputs; predict serves 1 and 1"
            )
        inp, out = inputs[0], outputs[0]
        if np.dtype(inp["dtype"]) != np.float32 or np.dtype(out["dtype"]) != np.float32:
            raise ValueError("predict serves float32 inputs and outputs only")
        in_shape = [int(d) for d in inp["shape"]]
        if len(in_shape) != 2 or in_shape[1] != info.n_features:
            raise ValueError(f"input shape {in_shape} does not match the schema's {info.n_features} features")
        self._in = int(inp["index"])
        self._out = int(out["index"])
        self._single.resize_tensor_input(self._in, [1, info.n_features], strict=False)
        self._single.allocate_tensors()
        probe = self._invoke(self._single, np.zeros((1, info.n_features), dtype=np.float32))
        self.n_outputs = int(probe.shape[1])
        if info.task == "binary" and self.n_outputs not in (1, 2):
            raise ValueError(f"a binary classifier must output 1 or 2 values, not {self.n_outputs}")
        if info.task == "multiclass" and info.classes is not None and self.n_outputs != len(info.classes):
            raise ValueError(f"the model outputs {self.n_outputs} values for {len(info.classes)} classes")
        # Built now, from the file that was just verified: never from a later read of /tmp.
        self._batch: Any = factory(str(path))
        self._batch_rows = 0

    def _invoke(self, interp: Any, x: np.ndarray) -> np.ndarray:
        interp.set_tensor(self._in, x)
        interp.invoke()
        y: np.ndarray = interp.get_tensor(self._out)
        return y.reshape(x.shape[0], -1)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(n, features) float32 -> (n, outputs) float32."""
        n = x.shape[0]
        with self._lock:
            if n == 1:
                return self._invoke(self._single, x)
            if n != self._batch_rows:
                self._batch.resize_tensor_input(self._in, [n, self.info.n_features], strict=False)
                self._batch.allocate_tensors()
                self._batch_rows = n
            return self._invoke(self._batch, x)

    def predict_tensors(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """A tensor model's inputs (by name, batch first, checked against its signature) -> its outputs
        by name (batch first)."""
        with self._lock:
            return self._runner.run(inputs)


class _TensorRunner:
    """A tensor model's interpreter, fed by input name: through its ``serving_default`` signature
    runner when the model has one (a SavedModel's conversion does), else by tensor name
    (``serving_default_image:0`` or ``image``). The model's inputs and outputs must be the schema's
    (names, dtypes, shapes without the batch); a batch of one runs at load."""

    def __init__(self, interp: Any, sig: Signature):
        from modelops.domain.signature import SIGNATURE_KEY

        self.sig = sig
        self._interp = interp
        signatures = interp.get_signature_list()
        self._runner: Any = None
        if SIGNATURE_KEY in signatures or len(signatures) == 1:
            key = SIGNATURE_KEY if SIGNATURE_KEY in signatures else next(iter(signatures))
            self._runner = interp.get_signature_runner(key)
            ins = self._runner.get_input_details()
            outs = self._runner.get_output_details()
            for s in sig.inputs:
                _match(ins, s, "input")
            for s in sig.outputs:
                _match(outs, s, "output")
            self._in: dict[str, Any] = {s.name: s.name for s in sig.inputs}
            self._out: dict[str, Any] = {s.name: s.name for s in sig.outputs}
        else:
            ins = {_tensor_name(d["name"]): d for d in interp.get_input_details()}
            outs = {_tensor_name(d["name"]): d for d in interp.get_output_details()}
            self._in = {s.name: int(_match(ins, s, "input")["index"]) for s in sig.inputs}
            self._out = {s.name: int(_match(outs, s, "output")["index"]) for s in sig.outputs}
        probe = self.run({s.name: np.zeros((1, *s.shape), dtype=s.dtype) for s in sig.inputs})
        for s in sig.outputs:
            got = tuple(probe[s.name].shape[1:])
            if got != s.shape:
                raise ValueError(
                    f"output {s.name!r} has shape {list(got)} per row; the schema says {list(s.shape)}"
                )

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._runner is not None:
            got = self._runner(**{self._in[name]: np.ascontiguousarray(a) for name, a in inputs.items()})
            return {name: np.asarray(got[key]) for name, key in self._out.items()}
        interp = self._interp
        for name, a in inputs.items():
            interp.resize_tensor_input(self._in[name], list(a.shape), strict=False)
        interp.allocate_tensors()
        for name, a in inputs.items():
            interp.set_tensor(self._in[name], np.ascontiguousarray(a))
        interp.invoke()
        return {name: np.asarray(interp.get_tensor(index)) for name, index in self._out.items()}


def _tensor_name(name: str) -> str:
    """``serving_default_image:0`` -> ``image`` (LiteRT's names for a signature's tensors)."""
    from modelops.domain.signature import SIGNATURE_KEY

    name = name.split(":", 1)[0]
    return name.removeprefix(f"{SIGNATURE_KEY}_")


def _match(details: Mapping[str, Any], spec: TensorSpec, kind: str) -> Mapping[str, Any]:
    """The details of a schema input/output (checked: its dtype and, for an input, its shape)."""
    d = details.get(spec.name)
    if d is None:
        raise ValueError(f"the model has no {kind} named {spec.name!r} (it has {sorted(details)})")
    if np.dtype(d["dtype"]) != np.dtype(spec.dtype):
        raise ValueError(f"{kind} {spec.name!r} is {np.dtype(d['dtype']).name}; the schema says {spec.dtype}")
    shape = [int(v) for v in d.get("shape_signature", d["shape"])][1:]
    if kind == "input" and any(v not in (-1, want) for v, want in zip(shape, spec.shape, strict=False)):
        raise ValueError(f"input {spec.name!r} has shape {shape} per row; the schema says {list(spec.shape)}")
    if kind == "input" and len(shape) != len(spec.shape):
        raise ValueError(f"input {spec.name!r} has shape {shape} per row; the schema says {list(spec.shape)}")
    return d


def check_identifier(path: Path) -> Path:
    """``path`` when it starts like a TFLite flatbuffer (the identifier at offset 4); ValueError if not."""
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head[4:8] != TFLITE_IDENTIFIER:
        raise ValueError("the artifact is not a TFLite flatbuffer")
    return path


def predict_rows(model: LoadedModel, x: np.ndarray, chunk: int = PREDICT_CHUNK_ROWS) -> np.ndarray:
    """(n, features) -> (n, outputs) float32, in batches of at most ``chunk`` rows."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.shape[0] == 0:
        return np.empty((0, model.n_outputs), dtype=np.float32)
    parts = [model.predict(x[i : i + chunk]) for i in range(0, x.shape[0], chunk)]
    return np.concatenate(parts, axis=0)


def predict_tensor_rows(
    model: LoadedModel, inputs: Mapping[str, np.ndarray], output: str, values: int = 1 << 22
) -> np.ndarray:
    """A tensor model's ``output`` as (n, values per row) for its inputs by name (batch first, checked
    by the caller), in batches of at most ``values`` input values per call (the gate's scoring)."""
    n = len(next(iter(inputs.values())))
    per_row = max(1, sum(int(np.prod(a.shape[1:])) for a in inputs.values()))
    chunk = max(1, values // per_row)
    parts = [
        np.asarray(model.predict_tensors({k: a[i : i + chunk] for k, a in inputs.items()})[output])
        for i in range(0, n, chunk)
    ]
    if not parts:
        return np.empty((0, 0), dtype=np.float32)
    return np.concatenate([p.reshape(len(p), -1) for p in parts], axis=0)

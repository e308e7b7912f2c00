"""Model cache and LiteRT inference for the predict stage (see docs/predict.md).

What predict will load: only an artifact that the version's manifest names as ``tflite`` (or
``tflite_int8``), whose file name ends in ``.tflite``, whose bytes match the manifest's SHA-256 and
size, and that starts with the TFLite flatbuffer identifier. Nothing else is ever parsed.

- The alias document is cached for ``ttl_seconds`` and then re-validated with a conditional GET
  (``Registry.get_alias_if_changed``), so a promotion is served within one TTL without a redeploy.
- Interpreters are kept in memory per (model, version), at most ``max_loaded`` of them (LRU);
  artifacts live under ``artifact_dir`` (content-addressed by SHA-256) and are re-hashed before
  every load, so a stale or tampered file in /tmp is never trusted.
- A version that fails to load (checksum mismatch, malformed manifest, incompatible model) is not
  served; the previous version keeps serving when there is one, and an ``ArtifactIntegrityFailed``
  event is published at most once per version per container. The failure is retried after
  ``retry_failed_after`` seconds.
- Canary: when the alias names a canary version and weight, that share of requests goes to it;
  with a routing key the choice is deterministic (``routing_unit``).
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from modelops.domain.alias import ALIAS_RE, PRODUCTION, AliasDoc
from modelops.domain.errors import (
    AliasNotFoundError,
    CorruptDocumentError,
    IntegrityError,
    ModelNotFoundError,
    ModelOpsError,
    RegistryUnavailableError,
    VersionNotFoundError,
)
from modelops.domain.spec import MODEL_NAME_RE
from modelops.stages.runtime import logger as log
from modelops.storage.registry import Manifest, Registry, sha256_file

TFLITE_IDENTIFIER = b"TFL3"
TASKS = frozenset({"regression", "binary", "multiclass"})
FLOAT32_MAX = float(np.finfo(np.float32).max)
_NEGATIVE_CACHE_MAX = 1024


class ModelUnavailableError(ModelOpsError):
    """The model exists but no version of it can be served right now (HTTP 503)."""

    code = "model_unavailable"


class NoProductionVersionError(ModelUnavailableError):
    """The model has no production alias yet (HTTP 503)."""

    code = "no_production_version"


class ArtifactLoadError(ModelUnavailableError):
    """A version's artifact failed its checksum or could not be loaded; it is not served."""

    code = "artifact_load_failed"


class EventPublisher(Protocol):
    def publish(self, detail_type: str, detail: dict[str, Any]) -> str: ...


InterpreterFactory = Callable[[str], Any]


def litert_interpreter(path: str) -> Any:
    """One single-threaded LiteRT interpreter (Lambda gives predict about one vCPU)."""
    return Interpreter(model_path=path, num_threads=1)


def routing_unit(model: str, key: str) -> float:
    """A stable number in [0, 1) for a routing key: BLAKE2b-64 of ``model + NUL + key`` / 2**64.

    The same key always lands on the same side of a canary split (for a given weight), in every
    container and every process; different models split independently.
    """
    digest = hashlib.blake2b(f"{model}\x00{key}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 18446744073709551616.0


@dataclass(frozen=True)
class ModelInfo:
    """What the API needs to know about a served version (from its manifest)."""

    model: str
    version: int
    task: str
    features: tuple[str, ...]
    classes: tuple[Any, ...] | None
    capture_sample_rate: float
    role: str
    sha256: str

    @property
    def n_features(self) -> int:
        return len(self.features)


def model_info(manifest: Manifest) -> ModelInfo:
    """Parse the serving-relevant fields of a manifest; ``CorruptDocumentError`` when they are unusable."""
    where = f"manifest of {manifest.model} v{manifest.version}"
    schema = manifest.get("schema")
    if not isinstance(schema, dict):
        raise CorruptDocumentError(f"{where} has no schema")
    task = manifest.get("task") or schema.get("task")
    if task not in TASKS:
        raise CorruptDocumentError(f"{where}: unknown task {str(task)[:40]!r}")
    raw = schema.get("features")
    if not isinstance(raw, list) or not raw:
        raise CorruptDocumentError(f"{where}: schema.features must be a non-empty list")
    names: list[str] = []
    for item in raw:
        name = item.get("name") if isinstance(item, dict) else item
        if not isinstance(name, str) or not name:
            raise CorruptDocumentError(f"{where}: schema.features has an entry without a name")
        names.append(name)
    if len(set(names)) != len(names):
        raise CorruptDocumentError(f"{where}: schema.features has duplicate names")
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
        features=tuple(names),
        classes=tuple(classes) if classes is not None else None,
        capture_sample_rate=float(rate),
        role=role,
        sha256=manifest.artifacts[role].sha256,
    )


def serving_role(manifest: Manifest) -> str:
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
        self.answer_bound: tuple[int, int, int] | None = None
        """(fixed, per row) bytes of an answer (``render.answer_bound``) and the rows that always
        fit: the service's, kept here (``PredictService._answer_bound``)."""

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


@dataclass
class _AliasEntry:
    doc: AliasDoc
    etag: str
    fresh_until: float


class ModelCache:
    """Resolves (model, alias | version, routing key) to a loaded, verified model. One per container."""

    def __init__(
        self,
        registry: Registry,
        *,
        artifact_dir: str | Path,
        ttl_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        events: EventPublisher | None = None,
        interpreter_factory: InterpreterFactory = litert_interpreter,
        rng: Callable[[], float] = random.random,
        max_loaded: int = 8,
        retry_failed_after: float = 60.0,
    ):
        self.registry = registry
        self.artifact_dir = Path(artifact_dir)
        self.ttl = float(ttl_seconds)
        self.clock = clock
        self.events = events
        self.factory = interpreter_factory
        self.rng = rng
        self.max_loaded = max(1, int(max_loaded))
        self.retry_failed_after = float(retry_failed_after)
        self._lock = threading.RLock()
        self._aliases: dict[tuple[str, str], _AliasEntry] = {}
        self._missing: dict[tuple[str, Any], tuple[float, ModelOpsError]] = {}
        self._manifests: dict[tuple[str, int], Manifest] = {}
        self._loaded: OrderedDict[tuple[str, int], LoadedModel] = OrderedDict()
        self._failed: dict[tuple[str, int], tuple[float, ModelOpsError]] = {}
        self._alerted: set[tuple[str, int]] = set()
        self._last_good: dict[tuple[str, str], int] = {}
        self._fallback_logged: set[tuple[str, str, int, int]] = set()

    # ------------------------------------------------------------------ resolution
    def resolve(
        self,
        model: str,
        *,
        alias: str | None = None,
        version: int | None = None,
        routing_key: str | None = None,
    ) -> LoadedModel:
        """The model to answer with. ``version`` pins an exact version (no canary, no fallback)."""
        if version is not None:
            return self._pinned(model, version)
        name = alias or PRODUCTION
        doc = self.alias(model, name)
        target = doc.version
        canary = doc.canary
        if canary is not None:
            u = routing_unit(model, routing_key) if routing_key is not None else self.rng()
            if u < canary["weight"]:
                target = canary["version"]
        lm = self._loaded.get((model, target))
        if lm is not None:
            self._touch((model, target))
            if target == doc.version and self._last_good.get((model, name)) != target:
                self._last_good[(model, name)] = target
            return lm
        return self._load_for_alias(model, name, doc, target)

    def alias(self, model: str, name: str = PRODUCTION) -> AliasDoc:
        """The alias document, from the cache while fresh, else re-validated with a conditional GET."""
        entry = self._aliases.get((model, name))
        if entry is not None and self.clock() < entry.fresh_until:
            return entry.doc
        with self._lock:
            return self._refresh_alias(model, name)

    def _refresh_alias(self, model: str, name: str) -> AliasDoc:
        key = (model, name)
        now = self.clock()
        entry = self._aliases.get(key)
        if entry is not None and now < entry.fresh_until:
            return entry.doc
        if entry is None:
            self._check_negative(key, now)
            if not MODEL_NAME_RE.match(model):
                raise ModelNotFoundError(f"no model named {model[:60]!r}")
            if not ALIAS_RE.match(name):
                raise AliasNotFoundError(f"{model} has no {name[:40]!r} alias")
            try:
                doc, etag = self.registry.get_alias(model, name)
            except (ModelNotFoundError, AliasNotFoundError) as exc:
                raise self._remember_missing(key, now, model, name, exc) from exc
        else:
            try:
                got = self.registry.get_alias_if_changed(model, name, entry.etag)
            except (RegistryUnavailableError, CorruptDocumentError) as exc:
                log.warning("%s; serving %s %s from the alias last read", exc.code, model, name)
                entry.fresh_until = now + min(self.ttl, 1.0)
                return entry.doc
            except AliasNotFoundError as exc:
                del self._aliases[key]
                raise self._remember_missing(key, now, model, name, exc) from exc
            if got is None:
                entry.fresh_until = now + self.ttl
                return entry.doc
            doc, etag = got
            if doc.version != entry.doc.version or doc.canary != entry.doc.canary:
                log.info("alias %s/%s moved: v%s -> v%s", model, name, entry.doc.version, doc.version)
        self._aliases[key] = _AliasEntry(doc, etag, now + self.ttl)
        return doc

    def _check_negative(self, key: tuple[str, Any], now: float) -> None:
        miss = self._missing.get(key)
        if miss is not None:
            if now < miss[0]:
                raise miss[1]
            del self._missing[key]

    def _remember_missing(
        self, key: tuple[str, str], now: float, model: str, name: str, exc: Exception
    ) -> ModelOpsError:
        err: ModelOpsError
        if isinstance(exc, ModelNotFoundError):
            err = ModelNotFoundError(f"no model named {model!r}")
        elif name == PRODUCTION:
            err = NoProductionVersionError(
                f"model {model!r} has no production version yet: promote a version "
                f"(modelops models promote {model} N) or pin one with ?version=N"
            )
        else:
            err = AliasNotFoundError(f"model {model!r} has no {name!r} alias")
        self._remember(key, now, err)
        return err

    def manifest(self, model: str, version: int) -> Manifest:
        """A version's manifest (immutable, so cached for good; misses are cached for one TTL)."""
        key = (model, version)
        got = self._manifests.get(key)
        if got is not None:
            return got
        with self._lock:
            now = self.clock()
            self._check_negative(("#manifest", key), now)
            if not MODEL_NAME_RE.match(model):
                raise ModelNotFoundError(f"no model named {model[:60]!r}")
            try:
                got = self.registry.get_manifest(model, version)
            except ModelNotFoundError as exc:
                err: ModelOpsError = ModelNotFoundError(f"no model named {model!r}")
                self._remember(("#manifest", key), now, err)
                raise err from exc
            except VersionNotFoundError as exc:
                err = VersionNotFoundError(f"model {model!r} has no version {version}")
                self._remember(("#manifest", key), now, err)
                raise err from exc
            self._manifests[key] = got
            return got

    def _remember(self, key: tuple[str, Any], now: float, err: ModelOpsError) -> None:
        if len(self._missing) >= _NEGATIVE_CACHE_MAX:
            self._missing.clear()
        self._missing[key] = (now + self.ttl, err)

    def _touch(self, key: tuple[str, int]) -> None:
        try:
            self._loaded.move_to_end(key)  # most recently used
        except KeyError:  # evicted by another thread meanwhile
            pass

    def _pinned(self, model: str, version: int) -> LoadedModel:
        lm = self._loaded.get((model, version))
        if lm is not None:
            self._touch((model, version))
            return lm
        with self._lock:
            return self._load(model, version, alias=None)

    def _load_for_alias(self, model: str, name: str, doc: AliasDoc, target: int) -> LoadedModel:
        with self._lock:
            try:
                lm = self._load(model, target, alias=name)
            except (ArtifactLoadError, VersionNotFoundError, RegistryUnavailableError) as exc:
                lm = self._fallback(model, name, doc, target, exc)
            if target == doc.version and lm.info.version == target:
                self._last_good[(model, name)] = target
            return lm

    def _fallback(self, model: str, name: str, doc: AliasDoc, failed: int, exc: ModelOpsError) -> LoadedModel:
        candidates = [doc.version, self._last_good.get((model, name)), doc.previous]
        tried = {failed}
        for v in candidates:
            if v is None or v in tried:
                continue
            tried.add(v)
            try:
                lm = self._load(model, v, alias=name)
            except (ArtifactLoadError, VersionNotFoundError, RegistryUnavailableError):
                continue
            if (model, name, failed, v) not in self._fallback_logged:
                self._fallback_logged.add((model, name, failed, v))
                log.warning("%s %s: v%s is not servable (%s); serving v%s", model, name, failed, exc.code, v)
            return lm
        if isinstance(exc, RegistryUnavailableError):
            raise RegistryUnavailableError("the model registry is unavailable; try again") from exc
        raise ModelUnavailableError(
            f"model {model!r} version {failed} could not be loaded (it failed its integrity or compatibility "
            f"check) and no earlier version is available; an alert was raised"
        ) from exc

    # ------------------------------------------------------------------ loading
    def _load(self, model: str, version: int, alias: str | None) -> LoadedModel:
        key = (model, version)
        lm = self._loaded.get(key)
        if lm is not None:
            self._loaded.move_to_end(key)
            return lm
        failed = self._failed.get(key)
        if failed is not None:
            if self.clock() < failed[0]:
                raise failed[1]
            del self._failed[key]
        try:
            manifest = self.manifest(model, version)  # an unknown version stays a 404, below
        except CorruptDocumentError as exc:
            raise self._load_failed(model, version, alias, exc) from exc
        try:
            info = model_info(manifest)
            path = self._fetch(manifest, info)
            lm = LoadedModel(info, path, self.factory)
        except RegistryUnavailableError:
            raise
        except (
            IntegrityError,
            CorruptDocumentError,
            VersionNotFoundError,
            ValueError,
            RuntimeError,
            OSError,
        ) as exc:
            raise self._load_failed(model, version, alias, exc) from exc
        self._loaded[key] = lm
        while len(self._loaded) > self.max_loaded:
            _, old = self._loaded.popitem(last=False)
            if not any(o.path == old.path for o in self._loaded.values()):
                old.path.unlink(missing_ok=True)
        log.info("loaded %s v%s (%s, %s)", model, version, info.role, info.sha256[:12])
        return lm

    def _load_failed(self, model: str, version: int, alias: str | None, exc: Exception) -> ArtifactLoadError:
        """Remember (for a while) and alert on a version that cannot be served; the error to raise."""
        err = ArtifactLoadError(
            f"model {model!r} version {version} failed its integrity or compatibility check and is not served"
        )
        self._failed[(model, version)] = (self.clock() + self.retry_failed_after, err)
        self._alert(model, version, alias, exc)
        return err

    def _fetch(self, manifest: Manifest, info: ModelInfo) -> Path:
        """The verified artifact on local disk: re-hashed when already there, else downloaded (verified)."""
        ref = manifest.artifacts[info.role]
        path = self.artifact_dir / manifest.model / f"{ref.sha256}.tflite"
        if path.exists():
            digest, size = sha256_file(path)
            if digest == ref.sha256 and size == ref.size:
                return self._check_identifier(path)
            path.unlink(missing_ok=True)
        self.registry.download_artifact(manifest, info.role, path)
        return self._check_identifier(path)

    @staticmethod
    def _check_identifier(path: Path) -> Path:
        with open(path, "rb") as fh:
            head = fh.read(8)
        if head[4:8] != TFLITE_IDENTIFIER:
            raise ValueError("the artifact is not a TFLite flatbuffer")
        return path

    def _alert(self, model: str, version: int, alias: str | None, exc: Exception) -> None:
        """ArtifactIntegrityFailed, at most once per version per container; never raises."""
        key = (model, version)
        log.error("%s v%s failed to load: %s: %s", model, version, type(exc).__name__, exc)
        if key in self._alerted:
            return
        self._alerted.add(key)
        if self.events is None:
            return
        detail = {
            "model": model,
            "version": version,
            "alias": alias,
            "reason": "checksum_mismatch" if isinstance(exc, IntegrityError) else "load_failed",
            "error": type(exc).__name__,
            "message": str(exc)[:500],
            "stage": "predict",
        }
        try:
            self.events.publish("ArtifactIntegrityFailed", detail)
        except Exception:  # an alert that cannot be sent must not turn into a failed request
            log.exception("could not publish ArtifactIntegrityFailed for %s v%s", model, version)

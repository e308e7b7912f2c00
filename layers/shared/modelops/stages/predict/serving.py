"""Model cache for the predict stage (see docs/predict.md); the LiteRT part (``LoadedModel``,
``model_info``, ``serving_role``) is :mod:`modelops.inference`, shared with the promotion gate.

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
from modelops.inference import (
    TASKS,
    TFLITE_IDENTIFIER,
    InterpreterFactory,
    LoadedModel,
    ModelInfo,
    check_identifier,
    litert_interpreter,
    model_info,
    serving_role,
)
from modelops.stages.runtime import logger as log
from modelops.storage.registry import Manifest, Registry, sha256_file

# Loading and running a verified .tflite lives in modelops.inference (the gate scores with it too);
# re-exported here for predict's modules and tests.
__all__ = [
    "FLOAT32_MAX",
    "TASKS",
    "TFLITE_IDENTIFIER",
    "ArtifactLoadError",
    "InterpreterFactory",
    "LoadedModel",
    "ModelCache",
    "ModelInfo",
    "ModelUnavailableError",
    "NoProductionVersionError",
    "litert_interpreter",
    "model_info",
    "routing_unit",
    "serving_role",
]
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


def routing_unit(model: str, key: str) -> float:
    """A stable number in [0, 1) for a routing key: BLAKE2b-64 of ``model + NUL + key`` / 2**64.

    The same key always lands on the same side of a canary split (for a given weight), in every
    container and every process; different models split independently.
    """
    digest = hashlib.blake2b(f"{model}\x00{key}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 18446744073709551616.0


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

    def carry_over(self, other: ModelCache) -> None:
        """Take ``other``'s verified interpreters and manifests (immutable) and nothing else: no alias
        document, no remembered miss or failure, no last good version, so everything read from the
        registry is read again. A SnapStart restore builds a new cache on new clients with this
        (``modelops.stages.predict.snapstart``)."""
        with self._lock:
            self._manifests.update(other._manifests)
            self._loaded.update(other._loaded)

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
        return check_identifier(path)

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

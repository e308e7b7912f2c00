"""SnapStart for predict (docs/predict.md "SnapStart"): the runtime hooks, registered by the function's
entry only when Lambda initialises it for a snapshot (``AWS_LAMBDA_INITIALIZATION_TYPE=snap-start``;
template.yaml ``PredictSnapStart``). Anywhere else ``register`` reads one environment variable and
imports nothing.

- ``before_snapshot``: build the container's service and load each model's production version, so the
  snapshot holds verified interpreters and a restored environment skips the download and the load.
- ``after_restore``: every restored environment starts from the same memory, so what was read, drawn
  or opened before the snapshot is not reused: the global ``random`` is reseeded from the OS (canary
  routing and capture sampling draw their own numbers), the cached boto3 clients are dropped (their
  credentials and connections date from the snapshot), and the service is built again on new clients,
  keeping only the loaded interpreters and manifests (``ModelCache.carry_over``): the first request
  reads the alias again, so a promotion made since the snapshot is served at once.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping

from modelops import aws
from modelops.domain.alias import PRODUCTION
from modelops.stages.predict import service as container
from modelops.stages.predict.service import PredictService
from modelops.stages.runtime import logger as log

SNAP_START = "snap-start"
"""``AWS_LAMBDA_INITIALIZATION_TYPE`` while Lambda initialises a version for its snapshot."""


def register(environ: Mapping[str, str] = os.environ) -> bool:
    """Register the hooks with Lambda's ``snapshot_restore_py`` (in the managed Python runtime only)
    when this initialisation is SnapStart's; True when registered."""
    if environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") != SNAP_START:
        return False
    try:
        from snapshot_restore_py import register_after_restore, register_before_snapshot
    except ImportError:
        log.warning("SnapStart initialisation without snapshot_restore_py: no runtime hooks registered")
        return False
    register_before_snapshot(before_snapshot)
    register_after_restore(after_restore)
    return True


def before_snapshot() -> int:
    """Load each model's production version, at most ``MAX_LOADED_VERSIONS`` of them; how many were
    loaded. Never raises: a model that cannot be loaded now is loaded at its first request, as without
    SnapStart, and a failed listing only leaves the snapshot without models."""
    svc = container.service()
    try:
        names = svc.registry.list_models()
    except Exception:  # the snapshot must be taken all the same
        log.exception("SnapStart: could not list the registry's models; the snapshot holds none")
        return 0
    loaded = 0
    for name in names:
        if loaded >= svc.settings.max_loaded_versions:
            break
        try:
            lm = svc.cache.resolve(name, alias=PRODUCTION)
        except Exception as exc:  # no production version, a version that fails its checks, ...
            log.info("SnapStart: %s not loaded before the snapshot (%s)", name, getattr(exc, "code", exc))
            continue
        log.info("SnapStart: %s v%s loaded before the snapshot", name, lm.info.version)
        loaded += 1
    return loaded


def after_restore() -> PredictService | None:
    """Reseed, drop the clients, rebuild the service keeping its loaded models; the new service (None
    when none was built before the snapshot: the first request builds it)."""
    random.seed()  # from os.urandom
    aws.clear_cache()
    old = container.current()
    if old is None:
        return None
    new = PredictService.from_settings(old.settings, clock=old.cache.clock)
    new.cache.carry_over(old.cache)
    container.configure(new)
    return new

"""Canary decisions: what alias document to write when a canary starts, is promoted or is rolled back.

Pure functions of the current alias document (None: the alias does not exist yet); each returns the
document to write, or None to leave the alias as it is. The stores apply them by compare-and-swap
(``Registry.update_alias`` re-runs them on the fresh document after a lost race):

- :func:`start`: the promotion gate (convert stage) makes a winning candidate the canary at the spec's
  ``canary_weight``; production keeps serving the rest of the traffic;
- :func:`promote`: a version becomes the alias's version and any canary is cleared. The gate uses it
  for a winner without a canary, and ``modelops models promote MODEL VERSION`` finishes a canary with it
  (promoting the canary's version); nothing finishes a canary automatically;
- :func:`rollback`: the canary no longer takes traffic (the alert stage, when an alarm or drift names it).
"""

from __future__ import annotations

from modelops.domain.alias import PRODUCTION, AliasDoc


def start(current: AliasDoc | None, version: int, weight: float, *, reason: str = "") -> AliasDoc | None:
    """``version`` becomes the canary at ``weight`` (replacing any other canary) while the alias keeps
    its version; None without a current alias (a canary needs a production version beside it)."""
    if current is None:
        return None
    return AliasDoc(
        alias=current.alias,
        version=current.version,
        previous=current.previous,
        canary={"version": version, "weight": float(weight)},
        reason=reason,
        extra=dict(current.extra),
    )


def promote(current: AliasDoc | None, version: int, *, alias: str = PRODUCTION, reason: str = "") -> AliasDoc:
    """``version`` becomes the alias's version with no canary; the version it replaces is kept as
    ``previous`` for rollback (unless it already was ``version``: then the older ``previous`` stays)."""
    previous = current.version if current is not None else None
    if current is not None and current.version == version:
        previous = current.previous
    return AliasDoc(alias=alias, version=version, previous=previous, canary=None, reason=reason)


def rollback(current: AliasDoc | None, version: int) -> AliasDoc | None:
    """Clear the canary when it is ``version``; None when there is no canary or another one now (an
    older rollback, or a newer gate decision, must not touch it)."""
    if current is None or not current.canary or int(current.canary["version"]) != version:
        return None
    return AliasDoc(alias=current.alias, version=current.version, previous=current.previous, canary=None)

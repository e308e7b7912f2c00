"""The stage-to-stage events: their source and detail-types (docs/contracts.md "Events")."""

from __future__ import annotations

SOURCE = "modelops"
DETAIL_TYPES = frozenset(
    {
        "DatasetRejected",
        "TrainingJobStarted",
        "TrainingJobFailed",
        "ModelVersionPublished",
        "ModelPromoted",
        "PromotionRejected",
        "ConversionFailed",
        "ArtifactIntegrityFailed",
        "DriftDetected",
        "CanaryRolledBack",
    }
)

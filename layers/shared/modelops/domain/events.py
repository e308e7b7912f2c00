"""The stage-to-stage events: their source and detail-types (docs/contracts.md "Events").

They travel on the stack's ``StageEventBus``; template.yaml limits each function role to the
detail-types its stage publishes (tests/unit/test_template_events.py checks that against the code)."""

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
        "ScoringCompleted",
        "ScoringFailed",
    }
)

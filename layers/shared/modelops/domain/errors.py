"""Domain errors, one module (Powertools' convention). Names end in ``Error``."""

from __future__ import annotations


class ModelOpsError(Exception):
    """Base class of every modelops error. ``code`` is stable and safe to show to callers."""

    code = "modelops_error"


class SpecError(ModelOpsError):
    """A model spec is missing or invalid."""

    code = "invalid_spec"


class SettingsError(SpecError):
    """A monitoring settings value out of range, an unknown field, or a settings document that does not
    parse (``modelops.domain.settings``)."""

    code = "invalid_settings"


class SpendLimitError(SpecError):
    """A spec asks for more than the stack allows (instance type, parallel trials): a rejection, not a retry."""

    code = "spend_limit"


class InvalidNameError(SpecError):
    """A model or alias name that the registry does not accept."""

    code = "invalid_name"


class DatasetRejectedError(ModelOpsError):
    """A dataset failed validation."""

    code = "dataset_rejected"


class ModelNotFoundError(ModelOpsError):
    code = "model_not_found"


class VersionNotFoundError(ModelOpsError):
    code = "version_not_found"


class AliasNotFoundError(ModelOpsError):
    code = "alias_not_found"


class VersionConflictError(ModelOpsError):
    """A compare-and-swap lost its race (after the retry budget), or a version number was taken."""

    code = "version_conflict"


class PublishInProgressError(VersionConflictError):
    """Another writer holds the claim to publish this job's version; retry later."""

    code = "publish_in_progress"


class IntegrityError(ModelOpsError):
    """Bytes read from the registry do not match the SHA-256 the manifest recorded."""

    code = "integrity_error"


class CorruptDocumentError(ModelOpsError):
    """A registry document (manifest, alias) exists but is not valid."""

    code = "corrupt_document"


class RegistryUnavailableError(ModelOpsError):
    """S3 failed in a way that retrying later may fix (throttling, 5xx)."""

    code = "registry_unavailable"


class BackendError(ModelOpsError):
    """A training backend refused or failed to start a job."""

    code = "backend_error"


class ConversionError(ModelOpsError):
    """SavedModel could not be converted, or the result failed its parity check."""

    code = "conversion_failed"


class InvalidEventError(ModelOpsError):
    """An event of a kind this stage handles is missing what it needs (for example a job name)."""

    code = "invalid_event"


class ArtifactInvalidError(ConversionError):
    """A staged training artifact is missing, truncated, unsafe to extract, or lacks a required file.

    Permanent: retrying cannot fix the bytes, so convert reports it instead of retrying."""

    code = "artifact_invalid"


class UnsupportedOpError(ConversionError):
    """The model needs operations that LiteRT's builtin op set lacks (they would need TF Select)."""

    code = "unsupported_op"

    def __init__(self, message: str, ops: list[str] | None = None):
        super().__init__(message)
        self.ops = list(ops or [])


class ParityError(ConversionError):
    """The converted model does not answer like the SavedModel within the spec's tolerance."""

    code = "parity_failed"

    def __init__(self, message: str, numbers: dict[str, object] | None = None):
        super().__init__(message)
        self.numbers = dict(numbers or {})


class ServingBudgetError(ConversionError):
    """The converted model is too large or too slow for the predict function."""

    code = "serving_budget_exceeded"

    def __init__(self, message: str, numbers: dict[str, object] | None = None):
        super().__init__(message)
        self.numbers = dict(numbers or {})


class SpecMissingError(SpecError):
    """A dataset arrived for a model that has no ``datasets/{model}/model.json``."""

    code = "no_spec"


class BackendNotConfiguredError(BackendError):
    """The spec asks for a training backend that this stack does not have (for example Batch)."""

    code = "backend_not_configured"


class TrainingError(ModelOpsError):
    """A training job could not run: hyperparameters missing or malformed, no dataset in its channel."""

    code = "training_failed"


class SearchNotSupportedError(BackendNotConfiguredError):
    """The spec asks for a search that its training backend cannot run (checked before any job starts)."""

    code = "search_not_supported"


class SearchFailedError(ModelOpsError):
    """Every trial of a search failed (or none completed): the job fails and no version is published."""

    code = "search_failed"


class TrialPrunedError(ModelOpsError):
    """A search trial was stopped early because it was doing worse than the others (not a failure)."""

    code = "trial_pruned"

    def __init__(self, message: str, epochs_run: int = 0):
        super().__init__(message)
        self.epochs_run = epochs_run

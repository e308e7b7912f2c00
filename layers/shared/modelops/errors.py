"""Domain errors, one module (Powertools' convention). Names end in ``Error``."""

from __future__ import annotations


class ModelOpsError(Exception):
    """Base class of every modelops error. ``code`` is stable and safe to show to callers."""

    code = "modelops_error"


class SpecError(ModelOpsError):
    """A model spec is missing or invalid."""

    code = "invalid_spec"


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

"""Training backends: start exactly one training job for an accepted dataset (docs/training.md).

Three implementations of one interface (:class:`~modelops.compute.request.TrainingBackend`), all fed the
same :class:`~modelops.compute.request.JobRequest`, one module each:

- :mod:`~modelops.compute.sagemaker`: ``CreateTrainingJob`` (a search: ``CreateHyperParameterTuningJob``);
- :mod:`~modelops.compute.batch`: ``SubmitJob`` (a search: an array job of independent random trials);
- :mod:`~modelops.compute.local`: the local twin's training service (a search runs inside the one job).

A spec with ``training.search`` is planned per backend (:func:`~modelops.compute.request.plan_search`)
before the job record is written, so a search a backend cannot run is refused before any job starts.
Throttling, quota and 5xx answers are retried a bounded number of times (:mod:`~modelops.compute.retry`),
then :class:`~modelops.domain.errors.BackendError` is raised so that Lambda's retries and the DLQ keep the
event; a request the backend refuses as invalid raises :class:`~modelops.compute.request.JobRejectedError`
at once (train_trigger rejects the dataset). Clients are passed in; nothing here builds one, and nothing here reads or writes S3 (the trainer's
source bundle goes through a store the caller passes). Script mode (spec ``training.entry_point``): the
model's code folder is packaged by :func:`~modelops.compute.source_bundle.package_code` (deterministic,
content-addressed) and every backend runs it under the same SageMaker contract
(``sagemaker_program`` / ``sagemaker_submit_directory``, docs/training.md "Bring your own script").
"""

from modelops.compute.batch import BatchBackend
from modelops.compute.local import LocalBackend
from modelops.compute.request import (
    HYPERPARAMETER_MAX_CHARS,
    JobRejectedError,
    JobRequest,
    StartedJob,
    TrainingBackend,
    plan_search,
)
from modelops.compute.retry import RetryPolicy
from modelops.compute.sagemaker import (
    SageMakerBackend,
    aws_tensorflow_image,
    create_training_job_request,
    create_tuning_job_request,
    metric_definitions,
)
from modelops.compute.source_bundle import (
    MAX_CODE_BYTES,
    MAX_CODE_FILES,
    CodeArchive,
    CodeRejectedError,
    check_code_listing,
    package_code,
    source_bundle,
)

__all__ = [
    "HYPERPARAMETER_MAX_CHARS",
    "MAX_CODE_BYTES",
    "MAX_CODE_FILES",
    "BatchBackend",
    "CodeArchive",
    "CodeRejectedError",
    "JobRejectedError",
    "JobRequest",
    "LocalBackend",
    "RetryPolicy",
    "SageMakerBackend",
    "StartedJob",
    "TrainingBackend",
    "aws_tensorflow_image",
    "check_code_listing",
    "create_training_job_request",
    "create_tuning_job_request",
    "metric_definitions",
    "package_code",
    "plan_search",
    "source_bundle",
]

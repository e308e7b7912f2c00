"""Every S3 key layout of the two buckets, in one place (docs/contracts.md "Buckets and keys").

Data bucket (``DataBucket``)::

    datasets/{model}/model.json                    the model's spec (uploaded before a dataset)
    datasets/{model}/{name}.csv|.csv.gz|.parquet   a dataset: each upload starts one training job
    datasets/{model}/code/...                      the model's training script (spec training.entry_point)
    datasets/{model}/eval/{name}.csv               a pinned evaluation set (never a training trigger)
    datasets/{model}/{name}/part-*.csv|...         a dataset of many parts (never a trigger itself)
    datasets/{model}/{name}/_SUCCESS               closes the folder: starts its validation (one job)
    quarantine/{rest of the dataset key}/{version}/ a rejected dataset's copy and reason.json
    captures/{YYYY/MM/DD/HH}/...                    predict's captured traffic (Firehose)
    capture-errors/...                              records Firehose could not deliver
    labels/{model}/{name}.jsonl                     ground truth joined to captures by request id

Registry bucket (``RegistryBucket``)::

    models/{model}/blobs/sha256/{digest}            content-addressed artifacts
    models/{model}/versions/{n}/manifest.json       immutable versions (create-only)
    models/{model}/aliases/{alias}.json             aliases, moved by compare-and-swap
    models/{model}/history/{alias}/{stamp}-{id}.json append-only alias history
    models/{model}/dedup/{sha256(key)}.json         publish claims (one version per job)
    models/{model}/config.json                      monitoring settings, moved by compare-and-swap
    models/{model}/config-history/{stamp}-{id}.json append-only settings history
    jobs/{job}.json, jobs/{job}.started.json        job records (create-only) and started markers
    jobs/{job}.artifact.json                        the job's archive as convert first read it (create-only)
    staging/{model}/{job}/...                       what a training job wrote (model.tar.gz, trials/)
    code/training/{sha256}/sourcedir.tar.gz         the trainer uploaded as a SageMaker job's source
    code/{model}/{sha256}.tar.gz                    a model's training script, packaged (create-only)
    inputs/{model}/{job}/train.csv                  the train rows the platform hands a job (issue 14)
    inputs/{model}/{job}/train/part-NNNNN.csv       a dataset of parts' train rows, one file per part
    dataset-runs/{run}/plan.json|items.json|result.json  a dataset of parts being validated
    dataset-runs/{run}/reports|train|evaluation/part-NNNNN.*  each part's report and split rows
    inputs/{model}/{job}/input_schema.json          production's input schema the job keeps (issue 16)
    evaluation/{model}/heldout|pinned/{sha256}.csv  evaluation rows the gate scores on (issue 14)
    monitoring/{model}/{stamp}/report.json|.html    one monitor window's report
    monitoring/{model}/latest.json                  the last window's summary
    monitor-runs/{run}/plan.json|items.json         a fanned-out monitor run: its window and chunks
    monitor-runs/{run}/partials|failures/{chunk}.json  each chunk's partials, or why it failed
    monitor-runs/{run}/result.json                  the run's outcome (complete, or which chunks failed)

Only the storage layer imports this module: the stages ask a store, never build a key.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from modelops.domain.formats import SUFFIXES

# ---------------------------------------------------------------------------- data bucket
DATASETS = "datasets/"
QUARANTINE = "quarantine/"
CAPTURES = "captures/"
CAPTURE_ERRORS = "capture-errors/"
LABELS = "labels/"
MONITORING = "monitoring/"
SPEC_FILE = "model.json"
DATASET_SUFFIX = ".csv"
"""The suffix of the datasets the platform itself writes (the monitor's retraining set)."""
DATASET_SUFFIXES = SUFFIXES
"""Every suffix an uploaded dataset may have (``.csv``, ``.csv.gz``, ``.parquet``)."""


def spec(model: str) -> str:
    return f"{DATASETS}{model}/{SPEC_FILE}"


def dataset_model(key: str) -> str | None:
    """The model of ``datasets/{model}/NAME.csv`` (or ``.csv.gz``, ``.parquet``; None for any other key;
    the name is not validated)."""
    if not key.startswith(DATASETS):
        return None
    parts = key.split("/")
    return parts[1] if len(parts) >= 3 and parts[1] else None


RESERVED_FOLDERS = ("code", "eval", "score")
"""Folders of ``datasets/{model}/`` that never hold a training dataset: the training script, the pinned
evaluation set (``is_eval_dataset``), the inputs of a batch scoring run."""
CODE_FOLDER = "code"


def is_dataset(key: str) -> bool:
    """A training dataset or a pinned evaluation set (``is_eval_dataset``); a file under
    ``datasets/{model}/code/`` or ``score/`` (``code/data.csv`` is the script's own file), or deeper
    than a pinned set under ``eval/``, is neither."""
    if not (key.startswith(DATASETS) and key.endswith(DATASET_SUFFIXES)):
        return False
    parts = key.split("/")
    if len(parts) >= 4 and parts[2] in RESERVED_FOLDERS:
        return is_eval_dataset(key)
    return not is_dataset_part(key)


# ---------------------------------------------------------------------------- datasets of many parts
PART_PREFIX = "part-"
SUCCESS_MARKER = "_SUCCESS"
"""Spark/Glue/Hadoop's marker of a finished folder: its creation starts the dataset's validation."""


def is_dataset_part(key: str) -> bool:
    """``datasets/{model}/{name}/part-*.csv`` (``.csv.gz``, ``.parquet``): one part of a dataset of many
    (docs/training.md "Datasets of many parts"). Its upload starts nothing: the folder's ``_SUCCESS``
    does. ``datasets/{model}/part-1.csv`` (no folder) stays a dataset of its own."""
    parts = key.split("/")
    return (
        len(parts) == 4
        and parts[0] + "/" == DATASETS
        and bool(parts[1])
        and bool(parts[2])
        and parts[2] not in RESERVED_FOLDERS
        and parts[3].startswith(PART_PREFIX)
        and key.endswith(DATASET_SUFFIXES)
    )


def dataset_folder_of_marker(key: str) -> tuple[str, str] | None:
    """``(model, folder prefix)`` of ``datasets/{model}/{name}/_SUCCESS``; None for any other key."""
    parts = key.split("/")
    if (
        len(parts) == 4
        and parts[0] + "/" == DATASETS
        and parts[1]
        and parts[2]
        and parts[2] not in RESERVED_FOLDERS
        and parts[3] == SUCCESS_MARKER
    ):
        return parts[1], f"{DATASETS}{parts[1]}/{parts[2]}/"
    return None


DATASET_RUNS = "dataset-runs/"
"""A dataset of parts being validated (registry bucket): the plan, each part's report and split rows."""


def dataset_run(run: str, name: str) -> str:
    """``dataset-runs/{run}/{name}`` (``plan.json``, ``items.json``, ``result.json``)."""
    return f"{DATASET_RUNS}{run}/{name}"


def dataset_run_part(run: str, kind: str, index: int, suffix: str = ".json") -> str:
    """One part's ``reports`` (``.json``), ``train`` or ``evaluation`` rows (``.csv``), in part order."""
    return f"{DATASET_RUNS}{run}/{kind}/part-{index:05d}{suffix}"


def job_train_part(model: str, job: str, index: int) -> str:
    """A dataset of parts' training rows, one file per part, in the job's ``train`` channel folder
    ``inputs/{model}/{job}/train/``."""
    return f"{INPUTS}{model}/{job}/train/part-{index:05d}.csv"


def code_prefix(model: str) -> str:
    """The model's training script folder, ``datasets/{model}/code/`` (sub-folders allowed)."""
    return f"{DATASETS}{model}/{CODE_FOLDER}/"


def retrain_dataset(model: str, version: int, day: datetime) -> str:
    """The dataset the monitor writes to retrain ``model`` on drift (it starts a training job)."""
    return f"{DATASETS}{model}/retrain-v{version}-{day:%Y%m%d}.csv"


def quarantine_prefix(key: str, version_id: str | None, etag: str | None) -> str:
    """``quarantine/{model}/{rest of the key}/{version id}/`` for ``datasets/{model}/{rest}``."""
    rest = key[len(DATASETS) :] if key.startswith(DATASETS) else key
    version = version_id or (f"etag-{etag}" if etag else "null")
    return f"{QUARANTINE}{rest}/{version}/"


def capture_hour_prefixes(start: float, end: float) -> Iterator[str]:
    """``captures/YYYY/MM/DD/HH/`` for every hour from ``start`` to ``end`` (epoch seconds, UTC)."""
    t = datetime.fromtimestamp(start, UTC).replace(minute=0, second=0, microsecond=0)
    last = datetime.fromtimestamp(end, UTC)
    while t <= last:
        yield f"{CAPTURES}{t:%Y/%m/%d/%H}/"
        t += timedelta(hours=1)


def labels_prefix(model: str | None = None) -> str:
    return f"{LABELS}{model}/" if model else LABELS


def label_model(key: str) -> str | None:
    """The model of ``labels/{model}/NAME.jsonl`` (None for any other key)."""
    parts = key.split("/")
    if len(parts) != 3 or parts[0] + "/" != LABELS or not parts[2].endswith(".jsonl"):
        return None
    return parts[1] or None


def monitoring_prefix(model: str | None = None) -> str:
    return f"{MONITORING}{model}/" if model else MONITORING


def monitoring_window(model: str, stamp: str) -> str:
    return f"{MONITORING}{model}/{stamp}/"


def monitoring_latest(model: str) -> str:
    return f"{MONITORING}{model}/latest.json"


MONITOR_RUNS = "monitor-runs/"
"""A fanned-out monitor run's working files (registry bucket), outside ``monitoring/`` so that no run
is ever listed as a model."""


def monitor_run(run: str, name: str) -> str:
    """``monitor-runs/{run}/{name}`` (``plan.json``, ``items.json``, ``result.json``)."""
    return f"{MONITOR_RUNS}{run}/{name}"


def monitor_run_chunks(run: str, kind: str) -> str:
    """The folder of a run's ``partials`` or ``failures``."""
    return f"{MONITOR_RUNS}{run}/{kind}/"


def monitor_run_chunk(run: str, kind: str, chunk: int) -> str:
    """One chunk's partials (``kind`` ``partials``) or failure (``failures``); zero-padded, so a listing
    is in chunk order."""
    return f"{MONITOR_RUNS}{run}/{kind}/{chunk:06d}.json"


# ---------------------------------------------------------------------------- registry bucket
MODELS = "models/"
JOBS = "jobs/"
STAGING = "staging/"
CODE = "code/training/"
ARTIFACT_FILE = "model.tar.gz"


def model_prefix(model: str) -> str:
    return f"{MODELS}{model}/"


def model_config(model: str) -> str:
    """The model's monitoring settings (``modelops.storage.settings``), moved by compare-and-swap."""
    return f"{MODELS}{model}/config.json"


def model_config_history(model: str) -> str:
    """Append-only history of the settings (not under ``history/``, whose folders are alias names)."""
    return f"{MODELS}{model}/config-history/"


def blob(model: str, digest: str) -> str:
    return f"{MODELS}{model}/blobs/sha256/{digest}"


def versions_prefix(model: str) -> str:
    return f"{MODELS}{model}/versions/"


def manifest(model: str, version: int) -> str:
    return f"{MODELS}{model}/versions/{version}/manifest.json"


def aliases_prefix(model: str) -> str:
    return f"{MODELS}{model}/aliases/"


def alias(model: str, name: str) -> str:
    return f"{MODELS}{model}/aliases/{name}.json"


def history_prefix(model: str, alias_name: str | None = None) -> str:
    return f"{MODELS}{model}/history/" + (f"{alias_name}/" if alias_name else "")


def history_entry(model: str, alias_name: str, stamp: str, entry_id: str) -> str:
    return f"{MODELS}{model}/history/{alias_name}/{stamp}-{entry_id}.json"


def publish_claim(model: str, digest: str) -> str:
    return f"{MODELS}{model}/dedup/{digest}.json"


def job_record(job: str) -> str:
    return f"{JOBS}{job}.json"


def job_started(job: str) -> str:
    return f"{JOBS}{job}.started.json"


def staging_prefix(model: str, job: str) -> str:
    """Where training job ``job`` writes: the channel's output path and ``model.tar.gz``."""
    return f"{STAGING}{model}/{job}/"


def staging_model_prefix(model: str) -> str:
    return f"{STAGING}{model}/"


def output_artifact(prefix: str) -> str:
    """What a SageMaker-contract job leaves under its output folder ``prefix``: ``{prefix}output/model.tar.gz``."""
    return f"{prefix}output/{ARTIFACT_FILE}"


def trials_prefix(model: str, job: str) -> str:
    """A search's trials: ``staging/{model}/{job}/trials/``."""
    return f"{STAGING}{model}/{job}/trials/"


def batch_trial_prefix(staging: str, index: int) -> str:
    """A Batch array child's folder: ``{staging}trials/{index:03d}/``."""
    return f"{staging}trials/{index:03d}/"


def source_bundle(digest: str) -> str:
    return f"{CODE}{digest}/sourcedir.tar.gz"


CODE_ARCHIVES = "code/"


def code_archive(model: str, digest: str) -> str:
    """A model's training script as packaged by train_trigger (``code/{model}/{sha256}.tar.gz``:
    content-addressed, create-only; a script-mode job's ``sagemaker_submit_directory``). Never
    ``code/training/{sha256}/sourcedir.tar.gz`` (the trainer's bundle): that one is a folder per digest."""
    return f"{CODE_ARCHIVES}{model}/{digest}.tar.gz"


def job_artifact_link(job: str) -> str:
    """convert's create-only record of the archive it first read for ``job`` (its SHA-256): the link
    between a job and its artifact, out of the training role's reach (it writes ``staging/`` only)."""
    return f"{JOBS}{job}.artifact.json"


# ---------------------------------------------------------------------------- evaluation rows (issue 14)
# The platform splits every accepted dataset by a hash of each row: the train rows go to the job, the
# evaluation rows stay with the platform and every gate decision of the model scores on them.
# Neither prefix is writable by the training role (it writes ``staging/`` only): a job cannot change
# another job's training input or the rows it will be judged on. predict (``models/*`` reads) cannot
# read labelled evaluation rows.
INPUTS = "inputs/"
EVALUATION = "evaluation/"


def staging_train_rows(model: str, job: str) -> str:
    """The train rows the platform hands the job (its ``train`` channel): ``inputs/{model}/{job}/train.csv``."""
    return f"{INPUTS}{model}/{job}/train.csv"


INPUT_SCHEMA_FILE = "input_schema.json"


def job_input_schema(model: str, job: str) -> str:
    """Production's input schema a job must keep (``{"features": [...]}``), beside its train rows, in its
    ``train`` channel: ``inputs/{model}/{job}/input_schema.json`` (issue 16, schema continuity)."""
    return f"{INPUTS}{model}/{job}/{INPUT_SCHEMA_FILE}"


def evaluation_prefix(model: str) -> str:
    return f"{EVALUATION}{model}/"


def heldout_rows(model: str, digest: str) -> str:
    """One accepted dataset's evaluation rows (content-addressed, create-only)."""
    return f"{EVALUATION}{model}/heldout/{digest}.csv"


def heldout_prefix(model: str) -> str:
    return f"{EVALUATION}{model}/heldout/"


def pinned_rows(model: str, digest: str) -> str:
    """The owner's pinned evaluation set, as validated (content-addressed, create-only)."""
    return f"{EVALUATION}{model}/pinned/{digest}.csv"


def pinned_pointer(model: str) -> str:
    """``{"sha256", "rows", "key", "source": {"key", "version_id"}, "at"}`` of the pinned set in force."""
    return f"{EVALUATION}{model}/pinned.json"


def is_eval_dataset(key: str) -> bool:
    """``datasets/{model}/eval/NAME.csv`` (or ``.csv.gz``, ``.parquet``): a pinned evaluation set, never
    a training trigger."""
    parts = key.split("/")
    return (
        len(parts) == 4
        and parts[0] + "/" == DATASETS
        and parts[2] == "eval"
        and key.endswith(DATASET_SUFFIXES)
    )


# ---------------------------------------------------------------------------- batch scoring (issue 20)
# Inputs are ``datasets/{model}/score/{name}.csv`` (data bucket; never a training dataset:
# RESERVED_FOLDERS), results ``scores/{model}/{version}/{run}/`` (data bucket, beside the inputs), a
# run's working files ``score-runs/{run}/`` (registry bucket: the plan, the map's items, failed chunks).
SCORE_FOLDER = "score"
SCORES = "scores/"
SCORE_RUNS = "score-runs/"


def score_input_model(key: str) -> str | None:
    """The model of ``datasets/{model}/score/NAME.csv`` (None for any other key, deeper ones too)."""
    parts = key.split("/")
    if (
        len(parts) != 4
        or parts[0] + "/" != DATASETS
        or parts[2] != SCORE_FOLDER
        or not parts[1]
        or not parts[3].endswith(DATASET_SUFFIX)
        or parts[3] == DATASET_SUFFIX
    ):
        return None
    return parts[1]


def score_input(model: str, name: str) -> str:
    """``datasets/{model}/score/{name}`` (``name`` ends with ``.csv``)."""
    return f"{DATASETS}{model}/{SCORE_FOLDER}/{name}"


def scores_prefix(model: str, version: int | None = None, run: str | None = None) -> str:
    """``scores/{model}/``, ``scores/{model}/{version}/`` or ``scores/{model}/{version}/{run}/``."""
    out = f"{SCORES}{model}/"
    if version is not None:
        out += f"{version}/"
        if run is not None:
            out += f"{run}/"
    return out


def score_part(model: str, version: int, run: str, chunk: int) -> str:
    """One chunk's scores: ``scores/{model}/{version}/{run}/part-{chunk:05d}.csv``."""
    return f"{scores_prefix(model, version, run)}part-{chunk:05d}.csv"


def score_rejects(model: str, version: int, run: str, chunk: int) -> str:
    """One chunk's rejected rows (row, reason): ``.../{run}/rejects/part-{chunk:05d}.csv``."""
    return f"{scores_prefix(model, version, run)}rejects/part-{chunk:05d}.csv"


def score_chunk_summary(model: str, version: int, run: str, chunk: int) -> str:
    """One chunk's counts (rows, scored, rejected): ``.../{run}/chunks/{chunk:05d}.json``."""
    return f"{scores_prefix(model, version, run)}chunks/{chunk:05d}.json"


def score_manifest(model: str, version: int, run: str) -> str:
    """The run's manifest (create-only): ``scores/{model}/{version}/{run}/manifest.json``."""
    return f"{scores_prefix(model, version, run)}manifest.json"


def score_run(run: str, name: str) -> str:
    """``score-runs/{run}/{name}`` (``plan.json``, ``items.json``, ``result.json``)."""
    return f"{SCORE_RUNS}{run}/{name}"


def score_run_failure(run: str, chunk: int) -> str:
    """Why a chunk failed its retries (the state machine writes it): ``score-runs/{run}/failures/{chunk:05d}.json``."""
    return f"{SCORE_RUNS}{run}/failures/{chunk:05d}.json"

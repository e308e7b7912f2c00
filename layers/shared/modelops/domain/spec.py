"""The model spec (``datasets/{model}/model.json``), parsed into typed, validated models.

Unknown keys and bad values are rejected with the field named (``SpecError``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from modelops.domain.encoding import DEFAULT_MAX_CATEGORIES, MAX_CATEGORIES
from modelops.domain.errors import InvalidNameError, SpecError, SpendLimitError

MODEL_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}\Z")
"""Model names: lower-case letters, digits and dashes, at most 40 characters (they go into job names)."""

Task = Literal["regression", "binary", "multiclass"]
FeatureKind = Literal["numeric", "categorical"]
SchemaMode = Literal["keep", "reset"]
CSV_ENCODINGS = ("utf-8", "latin-1", "iso-8859-15", "cp1252")
"""The text encodings a spec's ``csv.encoding`` may name (``utf-8`` also drops a leading BOM)."""
Metric = Literal["rmse", "mae", "accuracy", "auc"]
LOWER_IS_BETTER: dict[str, bool] = {"rmse": True, "mae": True, "accuracy": False, "auc": False}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


MAX_TRIALS = 50
"""The most trials one search may run (``training.search.max_trials``); a larger budget is rejected."""
MAX_CHOICES = 16
"""The most candidates a categorical range (``batch_size``, ``hidden_units``) may list."""
SEARCH_PARAMETERS = ("learning_rate", "batch_size", "hidden_units", "dropout", "epochs")
"""The training fields a search can tune, in the order trials list them."""


class LearningRateRange(_Strict):
    """``{"min", "max", "log"}``: a continuous range, sampled on a log scale by default."""

    min: Annotated[float, Field(gt=0.0, le=1.0)]
    max: Annotated[float, Field(gt=0.0, le=1.0)]
    log: bool = True

    @model_validator(mode="after")
    def _order(self) -> LearningRateRange:
        if self.min >= self.max:
            raise ValueError(f"min ({self.min:g}) must be below max ({self.max:g})")
        return self


class DropoutRange(_Strict):
    min: Annotated[float, Field(ge=0.0, lt=1.0)]
    max: Annotated[float, Field(ge=0.0, lt=1.0)]

    @model_validator(mode="after")
    def _order(self) -> DropoutRange:
        if self.min >= self.max:
            raise ValueError(f"min ({self.min:g}) must be below max ({self.max:g})")
        return self


class EpochsRange(_Strict):
    min: Annotated[int, Field(ge=1, le=10_000)]
    max: Annotated[int, Field(ge=1, le=10_000)]

    @model_validator(mode="after")
    def _order(self) -> EpochsRange:
        if self.min >= self.max:
            raise ValueError(f"min ({self.min}) must be below max ({self.max})")
        return self


Units = Annotated[list[Annotated[int, Field(ge=1, le=4096)]], Field(max_length=16)]


class SearchSpec(_Strict):
    """``training.search``: a hyperparameter and architecture search (docs/training.md "Search").

    The objective is the spec's promotion metric on the selection rows (a slice of the training rows;
    the held-out split is never used to choose), maximized or minimized per ``LOWER_IS_BETTER``.
    A range left out keeps the ``training`` value.
    """

    max_trials: Annotated[int, Field(ge=1)] = 10
    max_parallel: Annotated[int, Field(ge=1)] = 1
    strategy: Literal["random", "bayesian", "hyperband"] = "bayesian"
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None
    """Seeds the sampler; defaults to ``training.seed`` (which always seeds the split and the weights)."""
    learning_rate: LearningRateRange | None = None
    batch_size: Annotated[list[Annotated[int, Field(ge=1, le=65_536)]], Field(min_length=1)] | None = None
    hidden_units: Annotated[list[Units], Field(min_length=1)] | None = None
    dropout: DropoutRange | None = None
    epochs: EpochsRange | None = None

    @field_validator("max_trials")
    @classmethod
    def _cap_trials(cls, v: int) -> int:
        if v > MAX_TRIALS:
            raise ValueError(
                f"at most {MAX_TRIALS} trials per search (got {v}): split a larger search into several, "
                "or narrow the ranges"
            )
        return v

    @field_validator("max_parallel")
    @classmethod
    def _cap_parallel(cls, v: int) -> int:
        if v > MAX_TRIALS:
            raise ValueError(f"at most {MAX_TRIALS} trials in parallel (got {v})")
        return v

    @field_validator("batch_size", "hidden_units")
    @classmethod
    def _choices(cls, v: list[object] | None) -> list[object] | None:
        if v is None:
            return v
        if len(v) > MAX_CHOICES:
            raise ValueError(f"at most {MAX_CHOICES} candidates (got {len(v)})")
        seen: list[object] = []
        for item in v:
            if item in seen:
                raise ValueError(f"candidate {item!r} is listed twice")
            seen.append(item)
        return v

    @model_validator(mode="after")
    def _space(self) -> SearchSpec:
        given = [p for p in SEARCH_PARAMETERS if getattr(self, p) is not None]
        if not given:
            raise ValueError(
                "the search space is empty: give at least one range to search ("
                + ", ".join(SEARCH_PARAMETERS)
                + ")"
            )
        continuous = any(getattr(self, p) is not None for p in ("learning_rate", "dropout", "epochs"))
        points = 1
        for p in ("batch_size", "hidden_units"):
            choices = getattr(self, p)
            points *= len(choices) if choices is not None else 1
        if not continuous and points == 1:
            raise ValueError(
                "the search space holds a single point (each list has one candidate): nothing to search; "
                "set those values in training instead"
            )
        if self.max_parallel > self.max_trials:
            raise ValueError(
                f"max_parallel ({self.max_parallel}) is more than max_trials ({self.max_trials})"
            )
        if self.strategy == "hyperband" and self.epochs is not None:
            raise ValueError(
                "hyperband decides how many epochs each trial gets (up to training.epochs): "
                "leave epochs out of the search"
            )
        return self

    @property
    def parallel(self) -> int:
        return min(self.max_parallel, self.max_trials)


ENTRY_POINT_MAX = 256
_CODE_PATH_RE = re.compile(r"[A-Za-z0-9._+@=-]+(/[A-Za-z0-9._+@=-]+)*\Z")


def code_path_problem(path: str) -> str | None:
    """Why ``path`` cannot name a file of a model's code folder (None when it can): relative, ``/``
    separated, no ``.`` or ``..`` segment, no backslash, NUL or other control character, letters, digits and
    ``._+@=-`` only (names S3, tar and every file system agree on)."""
    if not path:
        return "an empty name"
    if path.startswith("/"):
        return "an absolute path (it must be relative to the code folder)"
    if "\\" in path or "\x00" in path or any(ord(c) < 32 or ord(c) == 127 for c in path):
        return "a backslash, NUL or control character"
    if any(part in ("", ".", "..") for part in path.split("/")):
        return "an empty, '.' or '..' path segment"
    if not _CODE_PATH_RE.match(path):
        return "characters other than letters, digits, '/' and '._+@=-'"
    return None


class TrainingSpec(_Strict):
    backend: Literal["sagemaker", "batch", "local"] = "sagemaker"
    epochs: Annotated[int, Field(ge=1, le=10_000)] = 50
    batch_size: Annotated[int, Field(ge=1, le=65_536)] = 32
    hidden_units: Annotated[list[Annotated[int, Field(ge=1, le=4096)]], Field(max_length=16)] = [64, 32]
    validation_split: Annotated[float, Field(gt=0.0, lt=0.9)] = 0.2
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0
    instance_type: Annotated[str, Field(pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$")] = "ml.g5.xlarge"
    learning_rate: Annotated[float, Field(gt=0.0, le=1.0)] = 1e-3
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    early_stopping_patience: Annotated[int, Field(ge=1, le=1000)] = 5
    search: SearchSpec | None = Field(default=None, exclude_if=lambda v: v is None)
    """A search (docs/training.md "Search"). Left out of the spec's JSON when absent, so the spec's
    SHA-256 (and so every job name) of a spec without a search is what it was before searches existed."""
    split_key: Annotated[str, Field(min_length=1, max_length=256)] | None = Field(
        default=None, exclude_if=lambda v: v is None
    )
    max_categories: Annotated[int, Field(ge=1, le=MAX_CATEGORIES)] = Field(
        default=DEFAULT_MAX_CATEGORIES, exclude_if=lambda v: v == DEFAULT_MAX_CATEGORIES
    )
    """Vocabulary size of each categorical feature (its most frequent training values; the rest go to
    the out-of-vocabulary bucket). Left out of the spec's JSON at its default (job names of existing
    specs do not change)."""
    """The column whose value decides a row's side in the platform's split (docs/training.md "The
    platform's split"): rows sharing it (one customer, one day) land on the same side. Absent: the
    whole row's content decides. Must be a column of the dataset (checked against its header), never
    the target. Left out of the spec's JSON when absent (job names of existing specs do not change)."""

    entry_point: Annotated[str, Field(min_length=1, max_length=ENTRY_POINT_MAX)] | None = Field(
        default=None, exclude_if=lambda v: v is None
    )
    """Script mode (docs/training.md "Bring your own script"): the user's training script, a path relative
    to ``datasets/{model}/code/`` (``train.py``, ``src/train.py``). Absent: the built-in trainer. Left
    out of the spec's JSON when absent (job names of existing specs do not change)."""

    @field_validator("entry_point")
    @classmethod
    def _entry_point(cls, v: str | None) -> str | None:
        if v is not None:
            problem = code_path_problem(v)
            if problem:
                raise ValueError(f"entry_point {v[:80]!r}: {problem}")
            if not v.endswith(".py"):
                raise ValueError(
                    f"entry_point {v[:80]!r} must name a Python file (.py), run as `python {v[:80]}`"
                )
        return v

    @model_validator(mode="after")
    def _search_budget(self) -> TrainingSpec:
        if self.search is not None and self.entry_point is not None:
            raise ValueError(
                "search tunes the built-in trainer's hyperparameters; it cannot be combined with entry_point"
            )
        if self.search is not None and self.search.strategy == "hyperband" and self.epochs < 3:
            raise ValueError("search: hyperband needs training.epochs >= 3 (the budget it shares out)")
        return self


class ConversionSpec(_Strict):
    quantize: Literal["none", "dynamic_int8"] = "none"
    parity_tolerance: Annotated[float, Field(gt=0.0, le=1.0)] = 1e-4


class PromotionSpec(_Strict):
    metric: Metric | None = None
    min_improvement: Annotated[float, Field(ge=0.0)] = 0.0
    canary_weight: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0


class MonitoringSpec(_Strict):
    psi_threshold: Annotated[float, Field(gt=0.0, le=10.0)] = 0.2
    capture_sample_rate: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0
    retrain_on_drift: bool = False


class CsvDialect(_Strict):
    """``csv``: how a CSV (or ``.csv.gz``) dataset is written, for exports that are not ``,``/``.``/UTF-8
    (a European spreadsheet: ``{"delimiter": ";", "decimal": ",", "encoding": "cp1252"}``)."""

    delimiter: Literal[",", ";", "\t", "|"] = ","
    decimal: Literal[".", ","] = "."
    encoding: Literal["utf-8", "latin-1", "iso-8859-15", "cp1252"] = "utf-8"

    @model_validator(mode="after")
    def _distinct(self) -> CsvDialect:
        if self.delimiter == self.decimal:
            raise ValueError(
                f"the decimal mark {self.decimal!r} cannot also be the delimiter (use ';' with a ',' decimal)"
            )
        return self


class ModelSpec(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, serialize_by_alias=True)

    task: Task
    target: Annotated[str, Field(min_length=1, max_length=256)]
    features: (
        Annotated[list[Annotated[str, Field(min_length=1, max_length=256)]], Field(min_length=1)] | None
    ) = None
    """The feature names, in order (an entry of the document may be ``{"name", "type"}``: its type goes
    to :attr:`feature_types`)."""
    feature_types: dict[str, FeatureKind] = Field(default_factory=dict, exclude_if=lambda v: not v)
    """The types ``features`` declares (``{"name": "plan", "type": "categorical"}``); a feature listed
    by name alone is typed by inference (docs/training.md "Feature types"). Left out of the JSON when
    empty."""
    training: TrainingSpec = TrainingSpec()
    conversion: ConversionSpec = ConversionSpec()
    promotion: PromotionSpec = PromotionSpec()
    monitoring: MonitoringSpec = MonitoringSpec()
    schema_mode: SchemaMode = Field(default="keep", alias="schema", exclude_if=lambda v: v == "keep")
    """``"schema"`` in the document: ``keep`` (a dataset may not change production's input schema) or
    ``reset`` (this spec allows a new one). Left out of the JSON at ``keep``."""
    csv: CsvDialect | None = Field(default=None, exclude_if=lambda v: v is None)

    @model_validator(mode="before")
    @classmethod
    def _typed_features(cls, data: Any) -> Any:
        """``features`` entries may be names or ``{"name", "type"}`` objects: split them into the names
        and :attr:`feature_types`."""
        if not isinstance(data, dict) or not isinstance(data.get("features"), list):
            return data
        raw = data["features"]
        if not any(isinstance(item, dict) for item in raw):
            return data
        names: list[Any] = []
        types: dict[str, Any] = dict(data.get("feature_types") or {})
        for n, item in enumerate(raw):
            if isinstance(item, dict):
                unknown = sorted(set(item) - {"name", "type"})
                if unknown:
                    raise ValueError(f"features.{n}: unknown key {unknown[0]!r} (an entry has name and type)")
                name = item.get("name")
                if not isinstance(name, str):
                    raise ValueError(f"features.{n}: an entry needs a name")
                kind = item.get("type", "numeric")
                if kind not in ("numeric", "categorical"):
                    raise ValueError(
                        f"features.{n}: type must be 'numeric' or 'categorical' (got {str(kind)[:40]!r})"
                    )
                types[name] = kind
                names.append(name)
            else:
                names.append(item)
        return {**data, "features": names, "feature_types": types}

    @model_validator(mode="after")
    def _check(self) -> ModelSpec:
        if self.features is not None:
            if len(set(self.features)) != len(self.features):
                raise ValueError("features: duplicate names")
            if self.target in self.features:
                raise ValueError("features: the target column cannot also be a feature")
        stray = [n for n in self.feature_types if self.features is None or n not in self.features]
        if stray:
            raise ValueError(f"feature_types: not among the features: {', '.join(stray[:10])}")
        if self.training.split_key is not None and self.training.split_key == self.target:
            raise ValueError(
                "training.split_key: the target column cannot decide the split (every row of one "
                "value would land on one side); name an identifier column, such as a customer or a day"
            )
        metric = self.promotion.metric
        if metric is not None:
            if self.task == "regression" and metric not in ("rmse", "mae"):
                raise ValueError(
                    f"promotion.metric: {metric!r} does not apply to regression (use rmse or mae)"
                )
            if self.task != "regression" and metric not in ("accuracy", "auc"):
                raise ValueError(
                    f"promotion.metric: {metric!r} does not apply to {self.task} (use accuracy or auc)"
                )
        return self

    def kind_of(self, name: str) -> str | None:
        """The declared type of feature ``name`` (None: inferred from the data)."""
        return self.feature_types.get(name)

    @property
    def metric(self) -> str:
        """The promotion metric, defaulting to rmse (regression) or accuracy (classification)."""
        if self.promotion.metric is not None:
            return self.promotion.metric
        return "rmse" if self.task == "regression" else "accuracy"


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "spec"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "value_error":
            msg = msg.removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


def parse_spec(raw: bytes | str | dict[str, object]) -> ModelSpec:
    """Parse a spec from JSON bytes/text or a dict; raise ``SpecError`` naming the bad field(s)."""
    if isinstance(raw, bytes | str):
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise SpecError(f"model.json is not valid JSON: {exc}") from exc
    else:
        data = raw
    if not isinstance(data, dict):
        raise SpecError("model.json must be a JSON object")
    try:
        return ModelSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"invalid model spec: {_describe(exc)}") from exc


def check_model_name(name: str) -> str:
    if not isinstance(name, str) or not MODEL_NAME_RE.match(name):
        raise InvalidNameError(
            f"invalid model name {name[:60]!r}: use lower-case letters, digits and dashes (at most 40)"
        )
    return name


@dataclass(frozen=True)
class SpendPolicy:
    """What this stack lets an uploaded spec spend (template parameters ``TrainingInstanceTypes`` and
    ``TrainingMaxParallelTrials``; the same limits are IAM conditions on the role that starts jobs, so
    the check here turns what would be an AccessDenied retried into the DLQ into a rejection naming the
    field). Empty ``instance_types`` allows any; ``max_parallel_trials`` 0 means the spec's own cap."""

    instance_types: frozenset[str] = frozenset()
    max_parallel_trials: int = 0

    @classmethod
    def parse(cls, instance_types: str, max_parallel_trials: int = 0) -> SpendPolicy:
        types = frozenset(t.strip() for t in instance_types.split(",") if t.strip())
        return cls(types, max(0, max_parallel_trials))

    def check(self, spec: ModelSpec) -> None:
        training = spec.training
        if self.instance_types and training.instance_type not in self.instance_types:
            raise SpendLimitError(
                f"training.instance_type {training.instance_type!r} is not allowed by this stack "
                f"(allowed: {', '.join(sorted(self.instance_types))})"
            )
        search = training.search
        if search is None or not self.max_parallel_trials:
            return
        if training.backend == "batch" and search.max_trials > self.max_parallel_trials:
            # a Batch search is one array job: its children all run at once (up to the compute
            # environment's vCPUs), whatever max_parallel says
            raise SpendLimitError(
                f"training.search.max_trials {search.max_trials} is more than this stack allows on Batch, "
                f"where every trial runs at once ({self.max_parallel_trials} trials at once)"
            )
        if search.parallel > self.max_parallel_trials:
            raise SpendLimitError(
                f"training.search.max_parallel {search.parallel} is more than this stack allows "
                f"({self.max_parallel_trials} trials at once)"
            )

"""The model spec (``datasets/{model}/model.json``), parsed into typed, validated models.

Unknown keys and bad values are rejected with the field named (``SpecError``).
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from modelops.errors import InvalidNameError, SpecError

MODEL_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
"""Model names: lower-case letters, digits and dashes, at most 40 characters (they go into job names)."""

Task = Literal["regression", "binary", "multiclass"]
Metric = Literal["rmse", "mae", "accuracy", "auc"]
LOWER_IS_BETTER: dict[str, bool] = {"rmse": True, "mae": True, "accuracy": False, "auc": False}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


class ModelSpec(_Strict):
    task: Task
    target: Annotated[str, Field(min_length=1, max_length=256)]
    features: (
        Annotated[list[Annotated[str, Field(min_length=1, max_length=256)]], Field(min_length=1)] | None
    ) = None
    training: TrainingSpec = TrainingSpec()
    conversion: ConversionSpec = ConversionSpec()
    promotion: PromotionSpec = PromotionSpec()
    monitoring: MonitoringSpec = MonitoringSpec()

    @model_validator(mode="after")
    def _check(self) -> ModelSpec:
        if self.features is not None:
            if len(set(self.features)) != len(self.features):
                raise ValueError("features: duplicate names")
            if self.target in self.features:
                raise ValueError("features: the target column cannot also be a feature")
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

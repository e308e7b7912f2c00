"""The predict API's Powertools resolver: routing for the catalogue routes, the OpenAPI document
(generated from the routes and the pydantic models below), and the resolver route of POST predict.

``modelops.stages.predict.api.handle`` sends POST predict down its lean path and only imports this
module for the other routes; both paths of POST predict run ``proxy.predict_event``, so they answer
identically (tests/integration/test_predict_api.py sends every bad input down both).
"""

from __future__ import annotations

import functools
import json
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelops import __version__
from modelops.domain.encoding import MAX_CATEGORY_CHARS
from modelops.stages.predict.errors import JSON, RequestError, error_result
from modelops.stages.predict.proxy import PREDICT_RESOURCE, caller, predict_event, request_id
from modelops.stages.predict.service import service
from modelops.stages.predict.serving import FLOAT32_MAX
from modelops.stages.predict.telemetry import telemetry

Float32 = Annotated[float, Field(ge=-FLOAT32_MAX, le=FLOAT32_MAX)]
"""A value the model's float32 input can hold."""
Category = Annotated[
    str,
    Field(
        min_length=1,
        description=f"A categorical feature's value (stripped, at most {MAX_CATEGORY_CHARS} characters; "
        "empty, whitespace or NA is refused as missing; a value the vocabulary lacks is answered with the "
        "out-of-vocabulary bucket and counted)",
    ),
]
Cell = Float32 | Category
"""A numeric feature takes a number, a categorical feature a string (GET /models/{name}: each feature's
type and vocabulary)."""


class PredictRequest(BaseModel):
    """Rows (lists of values in the schema's feature order) or records (objects keyed by feature name):
    numbers for numeric features, strings for categorical ones."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"instances": [[5.1, 3.5, 1.4, 0.2]]},
                {"instances": [{"x1": 5.1, "x2": 3.5}]},
                {"instances": [{"age": 41, "plan": "pro"}]},
            ]
        },
    )
    instances: Annotated[
        Annotated[list[Annotated[list[Cell], Field(min_length=1)]], Field(min_length=1)]
        | Annotated[list[Annotated[dict[str, Cell], Field(min_length=1)]], Field(min_length=1)],
        Field(
            description="At least one and at most MAX_ROWS (10,000) rows; finite numbers for numeric "
            "features, category strings for categorical ones"
        ),
    ]


class PredictResponse(BaseModel):
    model: str
    version: int = Field(description="The version that answered (also in the X-Model-Version header)")
    request_id: str
    predictions: list[Any] = Field(
        description="A value per row (regression) or a class label per row; a tensor model: TF Serving's "
        "row-format predictions (per row, the output's nested list, or an object keyed by output name)"
    )
    probabilities: list[list[float]] | None = Field(
        default=None, description="Classification: per row, one per label"
    )
    labels: list[Any] | None = Field(
        default=None,
        description="Classification: the schema's classes, in the order of each probability row. A tensor "
        "model whose schema has a classification task and classes: per row, the class of its first "
        "output's scores (argmax of the last axis; a single sigmoid at 0.5)",
    )


class ErrorDetail(BaseModel):
    code: str
    message: str
    request_id: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


class CanaryInfo(BaseModel):
    version: int
    weight: float


class AliasInfo(BaseModel):
    version: int
    previous: int | None = None
    canary: CanaryInfo | None = None
    updated_at: str = ""


class ModelSummary(BaseModel):
    name: str
    aliases: dict[str, int]
    latest_version: int | None


class ModelList(BaseModel):
    models: list[ModelSummary]


class VersionInfo(BaseModel):
    version: int
    created_at: str
    task: str | None = None
    metrics: dict[str, Any]


class ModelDetail(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    name: str
    aliases: dict[str, AliasInfo]
    versions: list[VersionInfo]
    schema_version: int | None = Field(
        description="The version whose schema and metrics are shown (production)"
    )
    feature_schema: dict[str, Any] | None = Field(
        alias="schema",
        description="The shown version's input schema: task, target, classes and its features in input "
        'order, each {"name", "type": "numeric" | "categorical", "dtype"} and a categorical one\'s '
        '"vocabulary" (its index in this list is what the model sees; any other value is out of vocabulary). '
        'A tensor model has "inputs" and "outputs" instead: each {"name", "shape" (without the batch), '
        '"dtype": "float32" | "int32" | "int64"}; a tensor classifier\'s "classes" name the scores of its '
        'first output (the last dimension), and its answers carry "labels", one per row',
    )
    metrics: dict[str, Any]


def _error_response(description: str) -> OpenAPIResponse:
    return {"description": description, "content": {JSON: {"model": ErrorResponse}}}


_COMMON_ERRORS: dict[int, OpenAPIResponse] = {
    404: _error_response("Unknown model, version or alias"),
    503: _error_response("Registry unavailable"),
}

# ---------------------------------------------------------------------- the resolver
app = APIGatewayRestResolver(enable_validation=True)


def _response(result: tuple[int, str, dict[str, str]]) -> Response[Any]:
    status, body, headers = result
    return Response(status_code=status, content_type=JSON, body=body, headers=headers)


@app.exception_handler(Exception)
def _on_error(exc: Exception) -> Response[str]:
    """Errors of the resolver's routes go through errors.error_result, like the lean path's."""
    event = app.current_event.raw_event
    rid = request_id(event, app.lambda_context)
    if isinstance(exc, NotFoundError):
        exc = RequestError(404, "not_found", "no such route")
    elif isinstance(exc, RequestValidationError):
        exc = RequestError(422, "invalid_request", "the request does not match the API's schema")
    elif isinstance(exc, ValidationError):  # a response model failed: our fault, not the caller's
        exc = RuntimeError("validation of an internal document failed")
    return _response(error_result(exc, rid, caller=caller(event), model=_path_name(event)))


def _path_name(event: dict[str, Any]) -> str | None:
    """The ``{name}`` of the path, for the request's log line."""
    params = event.get("pathParameters")
    name = params.get("name") if isinstance(params, dict) else None
    return str(name) if name is not None else None


def _catalogue_read(model: str | None = None) -> None:
    event = app.current_event.raw_event
    telemetry().catalogue_read(request_id(event, app.lambda_context), caller(event), model)


@app.not_found
def _on_not_found(exc: NotFoundError) -> Response[str]:
    return _on_error(exc)


@app.post(
    PREDICT_RESOURCE.replace("{name}", "<name>"),
    summary="Predict with a model's production (or pinned) version",
    description=(
        "Validates the rows against the version's schema and answers with LiteRT. `?alias=` or `?version=` "
        "pins what answers; with a canary the `X-Routing-Key` header (or `?routing_key=`) makes the choice "
        "deterministic. The version that answered is in the body and in the X-Model-Version header."
    ),
    enable_validation=False,  # validated by to_matrix (numpy), identically on the lean path
    responses={
        200: {
            "description": "Predictions",
            "content": {JSON: {"model": PredictResponse}},
            "headers": {
                "X-Model-Version": {
                    "description": "The version that answered",
                    "schema": {"type": "integer"},
                },
                "X-Request-Id": {
                    "description": "The request id (also in captures)",
                    "schema": {"type": "string"},
                },
            },
        },
        400: _error_response("Body not JSON, or a malformed ?version= / ?alias="),
        404: _error_response("Unknown model, version or alias"),
        413: _error_response(
            "Body over MAX_BODY_BYTES, more than MAX_ROWS rows, or an answer that could exceed "
            "MAX_RESPONSE_BYTES (the message says how many rows fit)"
        ),
        415: _error_response("Content-Type is not JSON"),
        422: _error_response(
            "Instances do not match the model's schema (the message names the row and field)"
        ),
        429: _error_response("Throttled by API Gateway (codes throttled, quota_exceeded)"),
        503: _error_response(
            "No production version, the version failed its checksum, or the registry is down"
        ),
    },
    tags=["predict"],
)
def predict(
    name: str,
    body: Annotated[PredictRequest | None, Body()] = None,
    alias: Annotated[str | None, Query(description="Serve this alias instead of production")] = None,
    version: Annotated[int | None, Query(description="Serve exactly this version", ge=1)] = None,
    routing_key: Annotated[
        str | None, Query(description="Canary routing key (same as X-Routing-Key)")
    ] = None,
) -> Response[PredictResponse]:
    return _response(predict_event(app.current_event.raw_event, app.lambda_context, name))


@app.get(
    "/models",
    summary="List models and their aliases",
    responses={
        200: {"description": "Models", "content": {JSON: {"model": ModelList}}},
        503: _COMMON_ERRORS[503],
    },
    tags=["models"],
)
def list_models() -> ModelList:
    models = ModelList.model_validate(service().list_models())
    _catalogue_read()
    return models


@app.get(
    "/models/<name>",
    summary="A model: aliases, versions, metrics and schema",
    responses={
        200: {"description": "The model", "content": {JSON: {"model": ModelDetail}}},
        **_COMMON_ERRORS,
    },
    tags=["models"],
)
def show_model(name: str) -> ModelDetail:
    detail = ModelDetail.model_validate(service().show_model(name))
    _catalogue_read(name)
    return detail


@app.get("/openapi.json", include_in_schema=False, enable_validation=False)
def openapi_document() -> Response[str]:
    _catalogue_read()
    return Response(status_code=200, content_type=JSON, body=openapi_json())


@functools.cache
def openapi_json() -> str:
    """The OpenAPI document Powertools generates from the routes and models above, with two fixes:
    the predict body is required (the route declares it optional only because the lean path reads
    it itself), and every error response, 422 included, has our error shape."""
    doc = json.loads(
        app.get_openapi_json_schema(
            title="modelops predict API",
            version=__version__,
            description=(
                "Predictions from the modelops registry's LiteRT models. Every error has the shape "
                '{"error": {"code", "message", "request_id"}}. Auth: AWS_IAM (SigV4) by default, '
                "or an API key; see docs/predict.md."
            ),
        )
    )
    error_ref = {"$ref": "#/components/schemas/ErrorResponse"}
    for path in doc.get("paths", {}).values():
        for op in path.values():
            for status, resp in op.get("responses", {}).items():
                if str(status).startswith(("4", "5")):
                    resp["content"] = {JSON: {"schema": error_ref}}
            body = op.get("requestBody")
            if body is not None:
                body["required"] = True
                body["content"] = {JSON: {"schema": {"$ref": "#/components/schemas/PredictRequest"}}}
    schemas = doc.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
        schemas.pop(unused, None)
    return json.dumps(doc, separators=(",", ":"))

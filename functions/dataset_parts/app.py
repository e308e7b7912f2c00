"""dataset_parts: the DatasetStateMachine's steps (``modelops.stages.dataset_parts``).

``plan_handler`` (DatasetPlanFunction) lists a dataset folder's parts, ``part_handler``
(DatasetPartFunction) is one Distributed Map child (one part validated and split), ``reduce_handler``
(DatasetReduceFunction) merges the parts' reports and rejects the dataset or starts its one training job
(docs/training.md "Datasets of many parts"). Failures raise: the map retries.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from modelops.stages import dataset_parts, runtime


@runtime.logger.inject_lambda_context(log_event=False)
def plan_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return dataset_parts.plan(event)


@runtime.logger.inject_lambda_context(log_event=False)
def part_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return dataset_parts.part(event)


@runtime.logger.inject_lambda_context(log_event=False)
def reduce_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return dataset_parts.reduce(event)

"""The AWS Batch backend: ``SubmitJob`` to the template's GPU queue and job definition (the training image
with ``--batch``, the request in ``SM_HPS``). Batch does not refuse a duplicate name, so the job name is
looked up first (``ListJobs`` in the stack's queue): that is sound only because a job's name is unique to
it and the same for every attempt at it (``modelops.stages.train_trigger.job_name``: the stack, the full
model name, the dataset's and the spec's SHA-256), so a retried job finds its own submission and never
another job's. A search (``random`` only) runs as an array job of independent trials.
"""

from __future__ import annotations

import json
from typing import Any

from modelops import aws
from modelops.compute.request import JobRequest, StartedJob, search_base
from modelops.compute.retry import RetryPolicy, aws_retryable, refused
from modelops.domain import search as searching
from modelops.domain.errors import BackendError, SearchNotSupportedError


class BatchBackend:
    name = "batch"

    def __init__(self, batch: Any, *, job_queue: str, job_definition: str, retry: RetryPolicy | None = None):
        if not job_queue or not job_definition:
            raise BackendError(
                "this stack has no Batch job queue/definition (deploy with TrainingBackend=batch)"
            )
        self.batch = batch
        self.job_queue = job_queue
        self.job_definition = job_definition
        self.retry = retry or RetryPolicy()

    def plan_search(self, req: JobRequest) -> dict[str, Any]:
        """An array job of independent trials (``random`` only: no trial can learn from another); a
        one-trial search runs in a single job."""
        search = req.spec.training.search
        assert search is not None
        if search.strategy != "random":
            raise SearchNotSupportedError(
                f"the batch backend runs a search as an array job of independent trials, so it supports "
                f"strategy 'random' only (got {search.strategy!r}); use sagemaker for bayesian or hyperband"
            )
        if search.max_trials < 2:  # an array job has 2 to 10,000 children
            return {**search_base(req), "mode": "in_job"}
        return {**search_base(req), "mode": "array", "array_size": search.max_trials}

    def request(self, req: JobRequest) -> dict[str, Any]:
        hps = req.hyperparameters()
        plan = self.plan_search(req) if req.spec.training.search is not None else None
        if plan is not None and plan["mode"] == "array":
            hps[searching.SEARCH_MODE_HP] = "array"
        env = {
            "SM_HPS": json.dumps(hps, sort_keys=True),
            "MODELOPS_OUTPUT_S3": req.output_uri,
            "MODELOPS_JOB_NAME": req.job,
        }
        out: dict[str, Any] = {
            "jobName": req.job,
            "jobQueue": self.job_queue,
            "jobDefinition": self.job_definition,
            "containerOverrides": {"environment": [{"name": k, "value": v} for k, v in env.items()]},
            "tags": req.tags(),
            "propagateTags": True,
        }
        if plan is not None and plan["mode"] == "array":
            out["arrayProperties"] = {"size": plan["array_size"]}
        return out

    def find(self, job: str) -> str | None:
        """The id of a job of that name in the queue (any status), or None. ``batch:ListJobs`` takes no
        resource scope; the template grants it (read-only) with ``TrainingBackend=batch``. Where a role
        may not list jobs, None too: the job record + started marker are what dedupe then."""
        try:
            resp = self.retry.call(
                "batch:ListJobs",
                lambda: self.batch.list_jobs(
                    jobQueue=self.job_queue, filters=[{"name": "JOB_NAME", "values": [job]}]
                ),
                aws_retryable,
            )
        except aws.AwsError as exc:
            if aws.error_code(exc) in ("AccessDeniedException", "AccessDenied", "UnauthorizedOperation"):
                return None
            raise
        for summary in resp.get("jobSummaryList", []):
            if summary.get("jobName") == job:
                return str(summary.get("jobId", ""))
        return None

    def start(self, req: JobRequest) -> StartedJob:
        request = self.request(req)
        try:
            existing = self.find(req.job)
            if existing is not None:
                return StartedJob(req.job, self.name, existing, already_started=True)
            resp = self.retry.call("batch:SubmitJob", lambda: self.batch.submit_job(**request), aws_retryable)
        except aws.AwsError as exc:
            raise refused("batch:SubmitJob", req.job, exc) from exc
        return StartedJob(req.job, self.name, str(resp.get("jobId", "")))

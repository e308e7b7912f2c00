"""The alert de-duplication store: claims on the stack's idempotency table (DynamoDB).

One item per alert fingerprint: ``id = "alert#{fingerprint}"``, ``status`` (``INPROGRESS`` while the
alert is being published, ``COMPLETE`` after), ``expiration`` (the table's TTL attribute: the end of
the de-duplication window), ``lease_until`` (when an ``INPROGRESS`` claim is considered abandoned by a
crashed attempt) and, once published, ``message_id``. docs/monitoring.md says why this is not
Powertools Idempotency.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from modelops.aws import AwsError, ErrorKind, classify

log = logging.getLogger(__name__)

PREFIX = "alert#"
LEASE_SECONDS = 120
"""An ``INPROGRESS`` claim older than this is taken over (its attempt crashed before publishing)."""


class DedupStore:
    """Claims on the idempotency table (``id = alert#{fingerprint}``, TTL attribute ``expiration``)."""

    def __init__(
        self,
        dynamodb: Any,
        table: str,
        window: int,
        lease: int = LEASE_SECONDS,
        clock: Callable[[], float] = time.time,
    ):
        self.db, self.table, self.window, self.lease, self.clock = dynamodb, table, window, lease, clock

    def _key(self, fp: str) -> dict[str, Any]:
        return {"id": {"S": PREFIX + fp}}

    def claim(self, fp: str) -> bool:
        """True when this caller now owns the fingerprint; False when it was claimed within the window
        (published, or being published by an attempt whose lease has not run out)."""
        now = int(self.clock())
        try:
            self.db.put_item(
                TableName=self.table,
                Item={
                    **self._key(fp),
                    "status": {"S": "INPROGRESS"},
                    "expiration": {"N": str(now + self.window)},
                    "lease_until": {"N": str(now + self.lease)},
                },
                ConditionExpression="attribute_not_exists(id) OR expiration < :now OR "
                "(#s = :inprogress AND lease_until < :now)",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":now": {"N": str(now)}, ":inprogress": {"S": "INPROGRESS"}},
            )
            return True
        except AwsError as exc:
            if classify(exc) is ErrorKind.CONFLICT:
                return False
            raise

    def complete(self, fp: str, message_id: str) -> None:
        """Mark the claim published. A failure is logged, not raised: the message is out, and an
        ``INPROGRESS`` claim still suppresses duplicates until its lease runs out."""
        try:
            self.db.update_item(
                TableName=self.table,
                Key=self._key(fp),
                UpdateExpression="SET #s = :done, message_id = :mid",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":done": {"S": "COMPLETE"}, ":mid": {"S": message_id}},
            )
        except AwsError:
            log.warning("could not mark alert %s complete", fp, exc_info=True)

    def mark(self, fp: str) -> None:
        """Record a fingerprint as already announced (for example inside another alert)."""
        now = int(self.clock())
        self.db.put_item(
            TableName=self.table,
            Item={
                **self._key(fp),
                "status": {"S": "COMPLETE"},
                "expiration": {"N": str(now + self.window)},
                "lease_until": {"N": str(now)},
            },
        )

    def release(self, fp: str) -> None:
        """Forget a claim (its publish failed), so a retry publishes."""
        self.db.delete_item(TableName=self.table, Key=self._key(fp))

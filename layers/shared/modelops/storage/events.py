"""Publishing stage-to-stage events on EventBridge (``source: "modelops"``; the names: domain.events).

In AWS every stage publishes on the stack's own ``StageEventBus`` (each function's ``EVENT_BUS_NAME``,
its ``Settings.event_bus_name``), never the default bus: the bus policy lets only the stack's roles
put events there, each limited to the detail-types it publishes (docs/contracts.md "Events")."""

from __future__ import annotations

import json
from typing import Any

from modelops.domain.errors import ModelOpsError
from modelops.domain.events import DETAIL_TYPES, SOURCE

__all__ = ["DETAIL_TYPES", "SOURCE", "EventBus", "EventPublishError"]


class EventPublishError(ModelOpsError):
    code = "event_publish_failed"


class EventBus:
    """Publishes modelops events on ``bus_name``. Takes an ``events`` client; a failed entry (an
    AccessDenied from the bus policy too) raises, never dropped."""

    def __init__(self, events_client: Any, bus_name: str = "default"):
        self.client = events_client
        self.bus_name = bus_name

    def publish(self, detail_type: str, detail: dict[str, Any]) -> str:
        if detail_type not in DETAIL_TYPES:
            raise ValueError(f"unknown detail-type {detail_type!r}")
        resp = self.client.put_events(
            Entries=[
                {
                    "Source": SOURCE,
                    "DetailType": detail_type,
                    "Detail": json.dumps(detail, sort_keys=True, default=str),
                    "EventBusName": self.bus_name,
                }
            ]
        )
        if resp.get("FailedEntryCount"):
            entry = resp["Entries"][0]
            raise EventPublishError(
                f"{detail_type} not published: {entry.get('ErrorCode')} {entry.get('ErrorMessage')}"
            )
        return str(resp["Entries"][0].get("EventId", ""))

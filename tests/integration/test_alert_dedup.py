"""De-duplication claims on DynamoDB (moto): the window expires, a crashed attempt's lease is taken over."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from modelops.storage.dedup import DedupStore


def create_table(name: str) -> Any:
    """The idempotency table as template.yaml declares it (hash key ``id``); returns the client."""
    client = boto3.client("dynamodb", region_name="us-east-1")
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return client


@pytest.fixture
def ddb(moto: None) -> Any:
    return create_table("idem")


def test_claims_expire_after_the_window(ddb: Any) -> None:
    now = [1_000_000.0]
    store = DedupStore(ddb, "idem", window=3600, lease=120, clock=lambda: now[0])
    assert store.claim("fp")
    store.complete("fp", "m-1")
    now[0] += 3000
    assert not store.claim("fp")
    now[0] += 601  # past the window; DynamoDB's TTL may not have deleted the item yet
    assert store.claim("fp")


def test_an_abandoned_in_progress_claim_is_taken_over_after_its_lease(ddb: Any) -> None:
    now = [2_000_000.0]
    store = DedupStore(ddb, "idem", window=3600, lease=120, clock=lambda: now[0])
    assert store.claim("fp")  # the attempt crashes before publishing or releasing
    now[0] += 60
    assert not store.claim("fp")  # still within the lease: a concurrent duplicate
    now[0] += 61
    assert store.claim("fp")
    item = ddb.get_item(TableName="idem", Key={"id": {"S": "alert#fp"}})["Item"]
    assert item["status"]["S"] == "INPROGRESS" and int(item["expiration"]["N"]) == int(now[0]) + 3600


def test_release_and_mark(ddb: Any) -> None:
    store = DedupStore(ddb, "idem", window=3600, lease=120)
    store.mark("announced")
    assert not store.claim("announced")
    assert store.claim("x")
    store.release("x")
    assert store.claim("x")

"""DynamoDB item requests answer as DynamoDB does, whichever way the sandbox serves them
(embedded mode sends those on tables without a stream straight to DynamoDB Local:
sandbox/embedded/dynamodb_items.py). Tables of the same name in other accounts and regions
stay apart, errors keep their codes, and what LocalStack fills in is still there."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from sandbox.aws import Aws
from sandbox.harness import unique_name

OTHER_ACCOUNT_KEY = "111111111111"  # LocalStack takes a 12-digit access key as the account


def dynamodb(aws: Aws, region: str, access_key: str = "test") -> Any:
    return aws.session.client(
        "dynamodb",
        endpoint_url=aws.endpoint_url,
        region_name=region,
        aws_access_key_id=access_key,
        aws_secret_access_key="test",
    )


@pytest.fixture
def same_name_tables(aws: Aws) -> Iterator[tuple[str, list[Any]]]:
    """One table name in three places: this account here, another region, another account."""
    name = unique_name("items")
    clients = [
        dynamodb(aws, aws.region),
        dynamodb(aws, "eu-west-1"),
        dynamodb(aws, aws.region, OTHER_ACCOUNT_KEY),
    ]
    for client in clients:
        client.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    yield name, clients
    for client in clients:
        client.delete_table(TableName=name)


def test_each_account_and_region_keeps_its_own_items(
    same_name_tables: tuple[str, list[Any]],
) -> None:
    name, clients = same_name_tables
    for place, client in enumerate(clients):
        client.put_item(TableName=name, Item={"id": {"S": "shared"}, "place": {"N": str(place)}})
        client.put_item(TableName=name, Item={"id": {"S": f"only-{place}"}})
    for place, client in enumerate(clients):
        item = client.get_item(TableName=name, Key={"id": {"S": "shared"}})["Item"]
        assert item["place"] == {"N": str(place)}
        ids = sorted(found["id"]["S"] for found in client.scan(TableName=name)["Items"])
        assert ids == sorted(["shared", f"only-{place}"])
        client.update_item(
            TableName=name,
            Key={"id": {"S": "shared"}},
            UpdateExpression="ADD hits :one",
            ExpressionAttributeValues={":one": {"N": "1"}},
        )
    for client in clients:
        answer = client.query(
            TableName=name,
            KeyConditionExpression="id = :id",
            ExpressionAttributeValues={":id": {"S": "shared"}},
        )
        assert [item["hits"] for item in answer["Items"]] == [{"N": "1"}]


def test_errors_keep_their_codes_and_details(aws: Aws) -> None:
    client = aws.client("dynamodb")
    name = unique_name("items")
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    try:
        client.put_item(TableName=name, Item={"id": {"S": "a"}, "version": {"N": "2"}})
        with pytest.raises(ClientError) as refused:
            client.put_item(
                TableName=name,
                Item={"id": {"S": "a"}, "version": {"N": "1"}},
                ConditionExpression="attribute_not_exists(id)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        assert refused.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
        assert refused.value.response["Item"]["version"] == {"N": "2"}
        with pytest.raises(ClientError) as wrong_type:
            client.get_item(TableName=name, Key={"id": {"N": "1"}})
        assert wrong_type.value.response["Error"]["Code"] == "ValidationException"
        with pytest.raises(ClientError) as missing:
            client.get_item(TableName=f"{name}-missing", Key={"id": {"S": "a"}})
        assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"
        read = client.get_item(
            TableName=name, Key={"id": {"S": "a"}}, ReturnConsumedCapacity="TOTAL"
        )
        assert read["ConsumedCapacity"]["TableName"] == name
        deleted = client.delete_item(TableName=name, Key={"id": {"S": "a"}}, ReturnValues="ALL_OLD")
        assert deleted["Attributes"]["version"] == {"N": "2"}
        assert "Item" not in client.get_item(TableName=name, Key={"id": {"S": "a"}})
    finally:
        client.delete_table(TableName=name)

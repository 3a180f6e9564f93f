"""REST APIs for patterns that put an API in front (API Gateway v2 is not in LocalStack's
free edition, so these are v1 REST APIs).

An API is described as an OpenAPI 3 document with `x-amazon-apigateway-*` extensions, the way
SAM and the reference designs write them, and imported with PutRestApi in overwrite mode: the
API keeps its id (and URL) while its definition follows the document.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sandbox.aws import Aws
from sandbox.provision import Queue, allow_invoke, ensure_role

STAGE = "sandbox"
GATEWAY_ROLE = "sandbox-apigateway-role"
# A response mapping template answering with the id SQS gave the message.
SQS_MESSAGE_ID = (
    '{"messageId": "$input.path(\'$.SendMessageResponse.SendMessageResult.MessageId\')"}'
)


@dataclass(frozen=True)
class RestApi:
    id: str
    url: str  # base URL of the stage; append the resource path


def ensure_rest_api(aws: Aws, name: str, paths: dict[str, Any], **extensions: Any) -> RestApi:
    """An API with these OpenAPI `paths`, deployed to the `sandbox` stage. `extensions` are
    extra top-level OpenAPI keys (`components`, `x-amazon-apigateway-request-validators`...)."""
    apigateway = aws.client("apigateway")
    document = {
        "openapi": "3.0.1",
        "info": {"title": name, "version": "1"},
        "paths": paths,
        **extensions,
    }
    found = [api for api in apigateway.get_rest_apis(limit=500)["items"] if api["name"] == name]
    api_id = found[0]["id"] if found else apigateway.create_rest_api(name=name)["id"]
    apigateway.put_rest_api(restApiId=api_id, mode="overwrite", body=json.dumps(document))
    apigateway.create_deployment(restApiId=api_id, stageName=STAGE)
    return RestApi(api_id, f"{aws.endpoint_url}/_aws/execute-api/{api_id}/{STAGE}")


def allow_api_to_invoke(aws: Aws, function: str, api: RestApi) -> None:
    """The permission real AWS needs before the API may call the function."""
    source = f"arn:aws:execute-api:{aws.region}:{aws.account_id}:{api.id}/*"
    allow_invoke(aws, function, "apigateway.amazonaws.com", source)


def gateway_role(aws: Aws) -> str:
    """The role API Gateway assumes for service integrations (AWS requires one)."""
    return ensure_role(aws, GATEWAY_ROLE, "apigateway.amazonaws.com")


def lambda_proxy(aws: Aws, function_arn: str) -> dict[str, Any]:
    """A Lambda proxy integration: the function gets the whole request, returns the response."""
    return {
        "type": "aws_proxy",
        "httpMethod": "POST",
        "uri": f"arn:aws:apigateway:{aws.region}:lambda:path/2015-03-31/functions/"
        f"{function_arn}/invocations",
    }


def sqs_send_message(
    aws: Aws,
    queue: Queue,
    *,
    message_body: str = "$util.urlEncode($input.body)",
    response_template: str = SQS_MESSAGE_ID,
    status: str = "202",
) -> dict[str, Any]:
    """A service integration straight into SQS (no Lambda in front): SendMessage with a
    form-encoded body built by the request template. `message_body` is a mapping-template
    expression for the message (URL-encoded)."""
    return {
        "type": "aws",
        "httpMethod": "POST",
        "uri": f"arn:aws:apigateway:{aws.region}:sqs:path/{aws.account_id}/{queue.name}",
        "credentials": gateway_role(aws),
        "requestParameters": {
            "integration.request.header.Content-Type": "'application/x-www-form-urlencoded'"
        },
        "requestTemplates": {"application/json": f"Action=SendMessage&MessageBody={message_body}"},
        "passthroughBehavior": "never",
        "responses": {
            "default": {
                "statusCode": status,
                "responseTemplates": {"application/json": response_template},
            }
        },
    }


def validated_json_body(schema_name: str) -> dict[str, Any]:
    """Method settings that make API Gateway reject a body not matching the named model
    with 400 before any integration runs. Pair with `body_models`. (LocalStack 4.14 answers
    only "Invalid request body"; it leaves `$context.error.validationErrorString` empty.)"""
    return {
        "x-amazon-apigateway-request-validator": "body",
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{schema_name}"}}
            },
        },
    }


def body_models(**schemas: dict[str, Any]) -> dict[str, Any]:
    """Top-level OpenAPI extensions declaring JSON-schema models and the body validator."""
    return {
        "components": {"schemas": schemas},
        "x-amazon-apigateway-request-validators": {
            "body": {"validateRequestBody": True, "validateRequestParameters": False}
        },
    }

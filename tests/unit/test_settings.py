"""The endpoint guard and client defaults: the sandbox never reaches real AWS by accident."""

from __future__ import annotations

import pytest

from sandbox import settings


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:4566",
        "http://127.0.0.1:4566",
        "http://127.9.9.9:4566",
        "http://[::1]:4566",
        "https://localhost.localstack.cloud:4566",
        "http://s3.localhost.localstack.cloud:4566",
    ],
)
def test_local_endpoints_are_accepted(url: str) -> None:
    assert settings.check_endpoint(url, environ={}) == url


@pytest.mark.parametrize(
    "url",
    [
        "https://sqs.us-east-1.amazonaws.com",
        "http://10.0.0.5:4566",
        "http://localhost.evil.example:4566",
        "http://localstack:4566",
    ],
)
def test_remote_endpoints_are_refused_with_the_setting_named(url: str) -> None:
    with pytest.raises(settings.RemoteEndpointError) as refused:
        settings.check_endpoint(url, environ={})
    assert settings.ALLOW_REMOTE_SETTING in str(refused.value)


def test_remote_endpoint_allowed_when_the_user_opts_in() -> None:
    environ = {settings.ALLOW_REMOTE_SETTING: "1"}
    assert settings.check_endpoint("http://localstack:4566", environ) == "http://localstack:4566"


def test_not_a_url_is_refused_with_what_to_fix() -> None:
    with pytest.raises(settings.RemoteEndpointError, match="AWS_ENDPOINT_URL"):
        settings.check_endpoint("localhost:4566", environ={})


def test_endpoint_defaults_to_the_sandbox() -> None:
    assert settings.endpoint({}) == settings.DEFAULT_ENDPOINT


def test_endpoint_comes_from_aws_endpoint_url_and_is_checked() -> None:
    assert (
        settings.endpoint({"AWS_ENDPOINT_URL": "http://127.0.0.1:4599"}) == "http://127.0.0.1:4599"
    )
    with pytest.raises(settings.RemoteEndpointError):
        settings.endpoint({"AWS_ENDPOINT_URL": "https://lambda.eu-west-1.amazonaws.com"})


def test_test_credentials_and_region_fill_only_what_is_missing() -> None:
    assert settings.client_defaults({}) == {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    assert settings.client_defaults({"AWS_PROFILE": "dev", "AWS_REGION": "eu-west-1"}) == {}
    assert settings.client_defaults({"AWS_ACCESS_KEY_ID": "AKIA"}) == {
        "AWS_DEFAULT_REGION": "us-east-1"
    }

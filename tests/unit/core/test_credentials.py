"""Credentials: dummy ones only for loopback endpoints and only when the standard chain is empty."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipelines.config.schema import BedrockConfig
from pipelines.core.credentials import (
    DUMMY_CREDENTIALS_ENV,
    apply_to_environment,
    is_loopback_url,
    resolve_credentials,
    resolve_for_endpoints,
)
from pipelines.core.errors import ConfigError

LOCAL = BedrockConfig(endpoint_url="http://127.0.0.1:8765", s3_endpoint_url="http://localhost:8766")


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An environment in which the standard chain finds nothing (the session's dummy keys,
    profiles, config files and the instance metadata service all out of reach)."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    empty = tmp_path / "empty"
    empty.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://127.0.0.1:8765", True),
        ("http://127.3.2.1", True),
        ("https://localhost:443/x", True),
        ("http://LOCALHOST:1", True),
        ("http://[::1]:8765", True),
        ("http://emu.localhost:9", True),
        (None, False),
        ("", False),
        ("https://bedrock-runtime.us-east-1.amazonaws.com", False),
        ("http://10.0.0.5:8765", False),
        ("http://0.0.0.0:8765", False),
        ("http://localhost.example.com", False),
        ("127.0.0.1:8765", False),
        ("s3://127.0.0.1/x", False),
    ],
)
def test_is_loopback_url(url: str | None, loopback: bool) -> None:
    assert is_loopback_url(url) is loopback


@pytest.mark.usefixtures("no_credentials")
def test_loopback_endpoints_without_credentials_get_dummy_ones() -> None:
    plan = resolve_credentials(LOCAL)
    assert plan.dummy
    assert plan.env == DUMMY_CREDENTIALS_ENV
    assert "http://127.0.0.1:8765" in plan.describe()
    env: dict[str, str] = {}
    apply_to_environment(plan, env)
    assert env == DUMMY_CREDENTIALS_ENV


@pytest.mark.usefixtures("no_credentials")
@pytest.mark.parametrize(
    ("bedrock", "key"),
    [
        (BedrockConfig(), "bedrock.endpoint_url"),
        (BedrockConfig(endpoint_url="https://vpce-1.bedrock.example.com"), "bedrock.endpoint_url"),
        (BedrockConfig(endpoint_url="http://127.0.0.1:8765"), "bedrock.s3_endpoint_url"),
        (
            BedrockConfig(
                endpoint_url="http://127.0.0.1:8765", s3_endpoint_url="http://minio:9000"
            ),
            "bedrock.s3_endpoint_url",
        ),
        (BedrockConfig(s3_endpoint_url="http://127.0.0.1:8766"), "bedrock.endpoint_url"),
    ],
)
def test_an_aws_endpoint_without_credentials_is_refused_naming_the_key(
    bedrock: BedrockConfig, key: str
) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_credentials(bedrock)
    assert info.value.key == key
    assert "AWS_ACCESS_KEY_ID" in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.usefixtures("no_credentials")
def test_real_credentials_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAREAL")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "real-secret")
    assert not resolve_credentials(LOCAL).dummy
    assert not resolve_credentials(BedrockConfig()).dummy


@pytest.mark.usefixtures("no_credentials")
def test_dummy_credentials_from_an_earlier_job_never_reach_aws(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in DUMMY_CREDENTIALS_ENV.items():
        monkeypatch.setenv(name, value)
    # Passed on again for the local endpoints (so that workers get them) ...
    assert resolve_credentials(LOCAL).env == DUMMY_CREDENTIALS_ENV
    # ... and not taken for credentials when the endpoint is AWS.
    with pytest.raises(ConfigError):
        resolve_credentials(BedrockConfig())


@pytest.mark.usefixtures("no_credentials")
def test_other_jobs_name_their_own_key_and_hint() -> None:
    assert resolve_for_endpoints({"s3_endpoint_url": "http://127.0.0.1:8766"}).dummy
    with pytest.raises(ConfigError, match=r"^s3_endpoint_url: unset \(AWS\).*local S3"):
        resolve_for_endpoints({"s3_endpoint_url": None}, hint="or use the local S3")


@pytest.mark.usefixtures("no_credentials")
def test_a_broken_profile_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    with pytest.raises(ConfigError, match="credential chain failed"):
        resolve_credentials(LOCAL)

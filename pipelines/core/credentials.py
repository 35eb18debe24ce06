"""AWS credentials for a job: the standard chain, or dummy ones for endpoints on this machine.

The project's local Bedrock endpoint and its S3 never check credentials, but boto3 and pyarrow
refuse to send a request without some. :func:`resolve_credentials` decides, in the driver and
before any work:

- the standard AWS credential chain (environment, ``AWS_PROFILE``, ``~/.aws``, instance or
  container role) finds credentials: nothing to add, every client uses them;
- it finds none and **every** endpoint of the job is a loopback address (``bedrock.endpoint_url``
  and ``bedrock.s3_endpoint_url`` both on 127.0.0.0/8, ``::1`` or ``localhost``): dummy
  credentials, which the job puts in the driver's environment (:func:`apply_to_environment`) and
  gives every Ray worker through the job's runtime environment;
- it finds none and an endpoint is AWS (unset) or another host: :class:`ConfigError`, one line
  saying what to set. Dummy credentials are never used for AWS.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from urllib.parse import urlparse

from pipelines.config.schema import BedrockConfig
from pipelines.core.errors import ConfigError

# Never valid on AWS; the local endpoints accept anything.
DUMMY_CREDENTIALS_ENV = {
    "AWS_ACCESS_KEY_ID": "local-endpoint",
    "AWS_SECRET_ACCESS_KEY": "local-endpoint",
}

_WHAT_TO_SET = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, ~/.aws/credentials, an "
    "instance role)"
)


def is_loopback_url(url: str | None) -> bool:
    """True for an ``http(s)://`` URL whose host is a loopback address or ``localhost``."""
    if not url:
        return False
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https"):
        return False
    return is_loopback_host(parsed.hostname or "")


def is_loopback_host(host: str) -> bool:
    """True for a loopback address (127.0.0.0/8, ``::1``) or ``localhost``."""
    host = host.lower().strip("[]").rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def standard_chain_has_credentials() -> bool:
    """Whether botocore's standard credential chain finds credentials in this process.

    The dummy ones (put in the environment by an earlier job of this process) do not count, so
    that they are passed on to workers again and never used against AWS.
    """
    import botocore.exceptions
    import botocore.session

    try:
        creds = botocore.session.get_session().get_credentials()
        return creds is not None and creds.access_key != DUMMY_CREDENTIALS_ENV["AWS_ACCESS_KEY_ID"]
    except botocore.exceptions.BotoCoreError as exc:
        # A broken profile or config file: the user meant to give credentials.
        raise ConfigError("credentials", f"the AWS credential chain failed: {exc}") from exc


@dataclass(frozen=True)
class CredentialsPlan:
    """What the job gives its driver and workers: ``env`` is empty for the standard chain."""

    env: dict[str, str] = field(default_factory=dict)
    endpoints: tuple[str, ...] = ()

    @property
    def dummy(self) -> bool:
        return bool(self.env)

    def describe(self) -> str:
        """One log line for the dummy case."""
        return (
            "no AWS credentials found; using dummy credentials for the loopback endpoints "
            f"{', '.join(self.endpoints)}"
        )


def resolve_credentials(bedrock: BedrockConfig) -> CredentialsPlan:
    """Decide a backfill's credentials (see the module docstring); raises :class:`ConfigError`."""
    return resolve_for_endpoints(
        {
            "bedrock.endpoint_url": bedrock.endpoint_url,
            "bedrock.s3_endpoint_url": bedrock.s3_endpoint_url,
        }
    )


def resolve_for_endpoints(
    endpoints: Mapping[str, str | None],
    hint: str = "or run against the local endpoints with bedrock=emulator",
) -> CredentialsPlan:
    """The same decision for any job: ``endpoints`` maps each config key to its URL (None = AWS).

    Dummy credentials only when the standard chain finds none and every URL is a loopback one;
    otherwise the error names the first key that is not, what to set, and ``hint``.
    """
    if standard_chain_has_credentials():
        return CredentialsPlan()
    for key, url in endpoints.items():
        if not is_loopback_url(url):
            where = f"{url} is not on this machine" if url else "unset (AWS)"
            raise ConfigError(
                key,
                f"{where} and no AWS credentials were found: {_WHAT_TO_SET}; {hint}",
            )
    return CredentialsPlan(
        dict(DUMMY_CREDENTIALS_ENV), tuple(url for url in endpoints.values() if url)
    )


def apply_to_environment(
    plan: CredentialsPlan, environ: MutableMapping[str, str] | None = None
) -> None:
    """Put the plan's variables in ``environ`` (default: this process's environment)."""
    env = os.environ if environ is None else environ
    env.update(plan.env)

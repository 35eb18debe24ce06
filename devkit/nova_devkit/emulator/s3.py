"""The emulator's own S3 client: reads ``s3Location`` sources, writes async job outputs.

It talks to the S3 endpoint the emulator was given (moto's server locally) with explicit dummy
credentials, and turns S3 failures into the ValidationException the service would answer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from nova_devkit.emulator.errors import validation
from nova_devkit.emulator.validate import S3_URI


class EmulatorS3:
    """Lazily built boto3 S3 client on ``endpoint_url`` (None: S3 sources are refused);
    ``region`` is read when the client is first built."""

    def __init__(self, endpoint_url: str | None, region: Callable[[], str]) -> None:
        self.endpoint_url = endpoint_url
        self._region = region
        self._lock = threading.Lock()
        self._client: Any = None

    def client(self) -> Any:
        """The boto3 client (built on first use)."""
        if self.endpoint_url is None:
            raise validation("no S3 endpoint is configured for this emulator")
        with self._lock:
            if self._client is None:
                import boto3
                from botocore.config import Config

                # Explicit dummy credentials: the local S3 never needs real ones, and the
                # emulator must not pick up whatever the environment holds.
                self._client = boto3.session.Session().client(
                    "s3",
                    endpoint_url=self.endpoint_url,
                    region_name=self._region(),
                    aws_access_key_id="emulator",
                    aws_secret_access_key="emulator",
                    config=Config(retries={"total_max_attempts": 2}),
                )
            return self._client

    def read(self, uri: str, max_bytes: int) -> bytes:
        """The object's bytes; ValidationException if it is missing, unreadable or too big."""
        from botocore.exceptions import ClientError

        m = S3_URI.match(uri)
        if not m:
            raise validation(f"{uri!r} is not an s3://bucket/key URI")
        try:
            obj = self.client().get_object(Bucket=m.group(1), Key=m.group(2))
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "NoSuchBucket", "404", "NotFound"):
                raise validation(f"S3 object {uri} not found") from exc
            raise validation(f"S3 object {uri} cannot be read ({code})") from exc
        size = int(obj.get("ContentLength", 0))
        if size > max_bytes:
            obj["Body"].close()
            raise validation(f"S3 object {uri} is {size} bytes, over the {max_bytes}-byte limit")
        return bytes(obj["Body"].read())

    def write(self, uri: str, data: bytes, content_type: str) -> None:
        """Put ``data`` at ``uri``; ValidationException if S3 refuses."""
        from botocore.exceptions import ClientError

        bucket, _, key = uri[len("s3://") :].partition("/")
        try:
            self.client().put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            raise validation(f"cannot write {uri} ({code})") from exc

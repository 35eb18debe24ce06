"""Build the request for one pipeline segment row (row -> :class:`EmbeddingRequest`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipelines.bedrock.enums import normalise_format
from pipelines.bedrock.errors import RequestValidationError
from pipelines.bedrock.inputs import AudioInput, ImageInput, Source, TextInput, VideoInput
from pipelines.bedrock.limits import RequestLimits
from pipelines.bedrock.request import EmbeddingRequest
from pipelines.config.schema import EmbeddingConfig


def request_from_segment(
    row: Mapping[str, Any],
    emb_cfg: EmbeddingConfig,
    purpose: str | None = None,
    limits: RequestLimits | None = None,
) -> EmbeddingRequest:
    """The SINGLE_EMBEDDING request for one segment row (see :mod:`pipelines.core.rows`).

    ``purpose`` defaults to ``emb_cfg.index_purpose``. Raises :class:`RequestValidationError`
    (field ``row.<column>``) when the row does not say what to send, and validates the request.
    """
    if row.get("error_code") is not None:
        raise ValueError("dead-letter rows carry no input; pass them through instead")
    kind = row.get("input_kind")
    fmt = normalise_format(row.get("input_format"))
    data = row.get("input_bytes")
    s3_uri = row.get("input_s3_uri")
    common: dict[str, Any] = {
        "purpose": purpose or emb_cfg.index_purpose,
        "dimension": emb_cfg.dimension,
    }
    if kind == "text":
        text = row.get("input_text")
        if text is None and s3_uri is None:
            raise RequestValidationError("row.input_text", "a text segment needs input_text")
        req = EmbeddingRequest(
            text=TextInput(
                value=text,
                source=Source.s3(s3_uri) if text is None and s3_uri else None,
                truncation_mode=emb_cfg.text_truncation_mode,
            ),
            limits=limits or RequestLimits(),
            **common,
        )
    elif kind in ("image", "audio", "video"):
        if data is None and not s3_uri:
            raise RequestValidationError(
                "row.input_bytes", f"an {kind} segment needs input_bytes or input_s3_uri"
            )
        if not fmt:
            raise RequestValidationError("row.input_format", f"an {kind} segment needs a format")
        source = Source(data=bytes(data)) if data is not None else Source.s3(str(s3_uri))
        if kind == "image":
            detail = row.get("detail_level") or (
                emb_cfg.document_detail_level
                if row.get("modality") == "document"
                else emb_cfg.image_detail_level
            )
            req = EmbeddingRequest(
                image=ImageInput(format=fmt, source=source, detail_level=detail), **common
            )
        elif kind == "audio":
            req = EmbeddingRequest(audio=AudioInput(format=fmt, source=source), **common)
        else:
            req = EmbeddingRequest(
                video=VideoInput(
                    format=fmt, source=source, embedding_mode=emb_cfg.video_embedding_mode
                ),
                **common,
            )
    else:
        raise RequestValidationError(
            "row.input_kind", f"must be one of text, image, audio, video; got {kind!r}"
        )
    req.validate()
    return req

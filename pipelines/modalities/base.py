"""What a modality is: everything the pipeline knows about one kind of asset, in one object.

A :class:`Modality` says

- how to recognise it: file ``extensions`` (manifest inference, scanning) and content signatures
  (:meth:`Modality.sniff`);
- how to decode it: :meth:`Modality.decode` (asset row -> segment rows, lazily);
- how its segments become a Bedrock request (:meth:`Modality.request`) and how many tokens one is
  reserved against the quota before the call (:meth:`Modality.estimate_tokens`);
- its work weight for planning decode tasks (``work_per_byte``);
- its cost rule: what a segment uses (:meth:`Modality.usage`) and what that costs
  (:meth:`Modality.cost`);
- its payload position fields (``position_fields``: page, seconds or a character range);
- the parameters that change its vectors (:meth:`Modality.fingerprint_fields`).

Nothing outside ``pipelines/modalities/`` compares a modality's name: the rest of the pipeline asks
the registry (:mod:`pipelines.modalities`) for the object and calls it. The helpers at the end of
this module build the four kinds of model input (text, image, audio, video) that modalities send.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pipelines.bedrock import tokens

if TYPE_CHECKING:
    from pipelines.bedrock.request import EmbeddingRequest
    from pipelines.config.schema import EmbeddingConfig, PricesConfig, SegmentationConfig
    from pipelines.core.errors import RecordError


# (embedding config fields, segmentation config fields) that change a modality's vectors.
FingerprintFields = tuple[tuple[str, ...], tuple[str, ...]]


@dataclass
class Usage:
    """What embedding some segments used: the quantities prices are quoted in."""

    text_chars: int = 0
    input_tokens: int = 0  # reported by the service (text), when it reports them
    images: int = 0
    media_seconds: float = 0.0

    def add(self, other: Usage) -> None:
        self.text_chars += other.text_chars
        self.input_tokens += other.input_tokens
        self.images += other.images
        self.media_seconds += other.media_seconds


class Modality:
    """One kind of asset (subclass it; one module per modality). Instances must pickle."""

    name: ClassVar[str]
    extensions: ClassVar[frozenset[str]] = frozenset()
    # Relative decode cost of one input byte (see pipelines/core/plan.py).
    work_per_byte: ClassVar[float] = 1.0
    # Segment-row columns that place a segment in its asset; copied into the point's payload.
    position_fields: ClassVar[tuple[str, ...]] = ()
    # EmbeddingConfig fields that change this modality's vectors (besides model, purpose, dim).
    embedding_fields: ClassVar[tuple[str, ...]] = ()
    # Every SegmentationConfig field fingerprint_fields() may return.
    segmentation_keys: ClassVar[frozenset[str]] = frozenset()
    # Whether Bedrock's async SEGMENTED_EMBEDDING can cut it (segmentation.mode=service).
    service_segmentation: ClassVar[bool] = False

    # -- recognising it -----------------------------------------------------------------------

    def sniff(self, head: bytes) -> int:
        """How surely the file's first bytes are this modality: 0 no, 1 a container that may
        hold it (the extension decides between candidates), 2 its own signature."""
        return 0

    # -- decoding -----------------------------------------------------------------------------

    def decode(
        self,
        asset: Mapping[str, Any],
        seg: SegmentationConfig,
        emb: EmbeddingConfig,
        s3_endpoint_url: str | None,
    ) -> Iterator[dict[str, Any] | RecordError]:
        """Segment rows of one asset (dead-letter rows for what cannot be decoded)."""
        raise NotImplementedError(f"modality {self.name!r} has no decoder")

    # -- calling the model --------------------------------------------------------------------

    def request(
        self, row: Mapping[str, Any], emb: EmbeddingConfig, purpose: str | None = None
    ) -> EmbeddingRequest:
        """The SINGLE_EMBEDDING request for one of this modality's segment rows."""
        raise NotImplementedError(f"modality {self.name!r} cannot build requests")

    def estimate_tokens(self, row: Mapping[str, Any]) -> int:
        """Tokens the rate budget reserves for one segment before the service reports any."""
        return tokens.text_tokens(len(row.get("input_text") or ""))

    # -- cost ---------------------------------------------------------------------------------

    def usage(self, row: Mapping[str, Any]) -> Usage:
        """What one embedded segment used (counted once per segment)."""
        return Usage(text_chars=len(row.get("input_text") or ""))

    def cost(self, usage: Usage, prices: PricesConfig) -> float:
        """On-demand cost in USD of ``usage`` (text from reported tokens or the estimate)."""
        text_tokens = usage.input_tokens or math.ceil(usage.text_chars / tokens.CHARS_PER_TOKEN)
        return (
            text_tokens / 1000.0 * prices.text_per_1k_tokens
            + usage.images * prices.image_each
            + usage.media_seconds * self.price_per_second(prices)
        )

    def price_per_second(self, prices: PricesConfig) -> float:
        """Price of one second of this modality's media (0 for non-timed media)."""
        return 0.0

    # -- fingerprint --------------------------------------------------------------------------

    def fingerprint_fields(self, seg: SegmentationConfig) -> FingerprintFields:
        """(embedding fields, segmentation fields) that change this modality's stored vectors
        under ``seg`` (the model id, index purpose and dimension count for every modality)."""
        return self.embedding_fields, ("mode",)

    def __repr__(self) -> str:
        return f"<modality {self.name}>"


# ---- the model's four input kinds, for modalities to send ----------------------------------------


def _media_source(row: Mapping[str, Any], what: str) -> tuple[Any, str]:
    from pipelines.bedrock.enums import normalise_format
    from pipelines.bedrock.errors import RequestValidationError
    from pipelines.bedrock.inputs import Source

    data, s3_uri = row.get("input_bytes"), row.get("input_s3_uri")
    if data is None and not s3_uri:
        raise RequestValidationError(
            "row.input_bytes", f"{what} segment needs input_bytes or input_s3_uri"
        )
    fmt = normalise_format(row.get("input_format"))
    if not fmt:
        raise RequestValidationError("row.input_format", f"{what} segment needs a format")
    source = Source(data=bytes(data)) if data is not None else Source.s3(str(s3_uri))
    return source, fmt


def _common(emb: EmbeddingConfig, purpose: str | None) -> dict[str, Any]:
    return {"purpose": purpose or emb.index_purpose, "dimension": emb.dimension}


def text_request(
    row: Mapping[str, Any], emb: EmbeddingConfig, purpose: str | None = None
) -> EmbeddingRequest:
    """A text input: the row's ``input_text`` (or its ``input_s3_uri``)."""
    from pipelines.bedrock.errors import RequestValidationError
    from pipelines.bedrock.inputs import Source, TextInput
    from pipelines.bedrock.request import EmbeddingRequest

    text, s3_uri = row.get("input_text"), row.get("input_s3_uri")
    if text is None and s3_uri is None:
        raise RequestValidationError("row.input_text", "a text segment needs input_text")
    req = EmbeddingRequest(
        text=TextInput(
            value=text,
            source=Source.s3(s3_uri) if text is None and s3_uri else None,
            truncation_mode=emb.text_truncation_mode,
        ),
        **_common(emb, purpose),
    )
    req.validate()
    return req


def image_request(
    row: Mapping[str, Any], emb: EmbeddingConfig, detail_level: str, purpose: str | None = None
) -> EmbeddingRequest:
    """An image input (png, jpeg, gif, webp) at ``detail_level`` unless the row names one."""
    from pipelines.bedrock.inputs import ImageInput
    from pipelines.bedrock.request import EmbeddingRequest

    source, fmt = _media_source(row, "an image")
    detail = row.get("detail_level") or detail_level
    req = EmbeddingRequest(
        image=ImageInput(format=fmt, source=source, detail_level=detail), **_common(emb, purpose)
    )
    req.validate()
    return req


def audio_request(
    row: Mapping[str, Any], emb: EmbeddingConfig, purpose: str | None = None
) -> EmbeddingRequest:
    """An audio input (mp3, wav, ogg) of at most 30 s."""
    from pipelines.bedrock.inputs import AudioInput
    from pipelines.bedrock.request import EmbeddingRequest

    source, fmt = _media_source(row, "an audio")
    req = EmbeddingRequest(audio=AudioInput(format=fmt, source=source), **_common(emb, purpose))
    req.validate()
    return req


def video_request(
    row: Mapping[str, Any], emb: EmbeddingConfig, purpose: str | None = None
) -> EmbeddingRequest:
    """A video input of at most 30 s, with the use case's embedding mode."""
    from pipelines.bedrock.inputs import VideoInput
    from pipelines.bedrock.request import EmbeddingRequest

    source, fmt = _media_source(row, "a video")
    req = EmbeddingRequest(
        video=VideoInput(format=fmt, source=source, embedding_mode=emb.video_embedding_mode),
        **_common(emb, purpose),
    )
    req.validate()
    return req


def segment_seconds(row: Mapping[str, Any]) -> float | None:
    """A timed segment's duration, or None when the row does not say."""
    start, end = row.get("start_s"), row.get("end_s")
    if start is None or end is None:
        return None
    return max(0.0, float(end) - float(start))


def is_text(head: bytes) -> bool:
    """True when ``head`` looks like text (UTF-8, few control characters, no NUL)."""
    if not head or b"\x00" in head:
        return False
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # The sniff window may cut a multi-byte character at its end.
        if exc.start < len(head) - 3:
            return False
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13))
    return controls <= len(head) // 100

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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pipelines.bedrock import tokens

if TYPE_CHECKING:
    from pipelines.bedrock.request import EmbeddingRequest
    from pipelines.config.schema import EmbeddingConfig, PricesConfig, SegmentationConfig
    from pipelines.core.errors import RecordError


# (embedding config fields, segmentation config fields) that change a modality's vectors.
FingerprintFields = tuple[tuple[str, ...], tuple[str, ...]]


@dataclass(slots=True)
class Usage:
    """What embedding some segments used: the quantities prices are quoted in."""

    text_chars: int = 0
    input_tokens: int = 0  # reported by the service (text), when it reports them
    images: int = 0
    media_seconds: float = 0.0  # priced at the modality's own rate (price_per_second)
    audio_seconds: float = 0.0  # sent as audio input by another modality (audio-only video)
    # Notes for the report, segments per note (e.g. "audio_only_video": embedded as audio).
    notes: dict[str, int] = field(default_factory=dict)

    def add(self, other: Usage) -> None:
        self.text_chars += other.text_chars
        self.input_tokens += other.input_tokens
        self.images += other.images
        self.media_seconds += other.media_seconds
        self.audio_seconds += other.audio_seconds
        for note, n in other.notes.items():
            self.notes[note] = self.notes.get(note, 0) + n


@dataclass
class Extent:
    """How big an asset is, as far as a cheap look before decoding can tell (None: unknown)."""

    pages: int | None = None
    media_seconds: float | None = None
    segments: int | None = None


class Modality:
    """One kind of asset (subclass it; one module per modality). Instances must pickle."""

    name: ClassVar[str]
    # The decoder, as "module:function" (imported in the worker that needs it: PyMuPDF and PyAV
    # load only where they are used). Override decode() instead for a decoder defined in place.
    decoder: ClassVar[str] = ""
    extensions: ClassVar[frozenset[str]] = frozenset()
    # Relative decode cost of one input byte (see pipelines/core/plan.py).
    work_per_byte: ClassVar[float] = 1.0
    # True: an asset with inline ``text`` is decoded in the decode task's own process even with
    # decode.isolate, because its decoder only cuts a string (no file, no native code): a
    # decoder process would add a pipe round trip per asset and protect from nothing.
    inline_in_process: ClassVar[bool] = False
    # Segment-row columns that place a segment in its asset; copied into the point's payload.
    position_fields: ClassVar[tuple[str, ...]] = ()
    # EmbeddingConfig fields that change this modality's vectors (besides model, purpose, dim).
    embedding_fields: ClassVar[tuple[str, ...]] = ()
    # Every SegmentationConfig field fingerprint_fields() may return.
    segmentation_keys: ClassVar[frozenset[str]] = frozenset()
    # Wire formats Bedrock's async SEGMENTED_EMBEDDING takes for it (segmentation.mode=service);
    # empty: service segmentation is refused for this modality.
    service_formats: ClassVar[frozenset[str]] = frozenset()

    # -- recognising it -----------------------------------------------------------------------

    def sniff(self, head: bytes) -> int:
        """How surely the file's first bytes are this modality: 0 no, 1 a container that may
        hold it (the extension decides between candidates), 2 its own signature."""
        return 0

    def identify(self, path: str, head: bytes) -> int | None:
        """A deeper look at a local file, when the first bytes leave its modality open (the
        scanner calls it only then, and never for S3 objects): the same scores as
        :meth:`sniff` from opening the file with the library that decodes it (Pillow, PyAV,
        ...), or None when this modality has no deeper look or cannot tell (the sniff score
        stands). Must not raise for any content."""
        return None

    def embedded_as(self, row: Mapping[str, Any]) -> tuple[str, str] | None:
        """``(modality, dead-letter code)`` when this segment row is sent as another
        modality's input (a video file that holds only audio: ``("audio",
        "audio_only_video")``); the decode stage dead-letters the asset with the code when the
        use case does not take that modality. None: the row is this modality's own input."""
        return None

    # -- decoding -----------------------------------------------------------------------------

    def extent(self, path: str | None, text: str | None, seg: SegmentationConfig) -> Extent:
        """Pages, media seconds and segments of the asset at the local ``path`` (or of its
        inline ``text``), from a cheap look before decoding (page count, container duration),
        for the per-asset limits; unknown fields are None (the decode stage then counts them as
        segments come). Must not raise for any content."""
        if text is None:
            return Extent()
        step = max(1, seg.text_max_chars - seg.text_overlap_chars)
        return Extent(segments=max(1, math.ceil(max(0, len(text) - seg.text_overlap_chars) / step)))

    def split(
        self, row: Mapping[str, Any], seg: SegmentationConfig, work: float, max_work: float
    ) -> int:
        """In how many parts the asset ``row`` (of estimated decode ``work``) is decoded, so that
        no part is much over ``max_work``: 1 (the default) decodes it whole.

        A modality that returns more than 1 must have a decoder that honours the row's part
        (:func:`asset_part`): it decodes the whole asset's plan (so every part agrees on
        ``segment_count`` and numbers its segments globally) but produces only the segments
        :func:`part_segments` gives it. The asset stays the unit of completion: the ledger counts
        it embedded once every part's segments are written."""
        return 1

    def decode(
        self,
        asset: Mapping[str, Any],
        seg: SegmentationConfig,
        emb: EmbeddingConfig,
        s3_endpoint_url: str | None,
    ) -> Iterator[dict[str, Any] | RecordError]:
        """Segment rows of one asset; a RecordError (raised, or yielded for one failed segment)
        for what cannot be decoded."""
        if not self.decoder:
            raise NotImplementedError(f"modality {self.name!r} has no decoder")
        import importlib

        module, function = self.decoder.split(":")
        decode: Any = getattr(importlib.import_module(module), function)
        result: Iterator[dict[str, Any] | RecordError] = decode(asset, seg, emb, s3_endpoint_url)
        return result

    # -- calling the model --------------------------------------------------------------------

    def request(
        self, row: Mapping[str, Any], emb: EmbeddingConfig, purpose: str | None = None
    ) -> EmbeddingRequest:
        """The SINGLE_EMBEDDING request for one of this modality's segment rows."""
        raise NotImplementedError(f"modality {self.name!r} cannot build requests")

    def estimate_tokens(self, row: Mapping[str, Any]) -> int:
        """Tokens the rate budget reserves for one segment before the service reports any."""
        return tokens.text_tokens(len(row.get("input_text") or ""))

    # -- service segmentation (segmentation.mode=service) --------------------------------------

    @property
    def service_segmentation(self) -> bool:
        """Whether this modality can be cut by the service (it builds segmented requests)."""
        return type(self).service_request is not Modality.service_request

    def service_modality(self, path: str | None) -> Modality:
        """The modality whose request the service gets for the local file at ``path`` (None: not
        local); a container can turn out to hold another kind of media."""
        return self

    def accepts_service_format(self, fmt: str) -> bool:
        """Whether the async API takes a file of this (normalised) extension."""
        return fmt in self.service_formats

    def service_request(
        self, fmt: str, source_uri: str, emb: EmbeddingConfig, seg: SegmentationConfig
    ) -> EmbeddingRequest:
        """The SEGMENTED_EMBEDDING request for a whole asset staged at ``source_uri``."""
        raise NotImplementedError(f"modality {self.name!r} has no service segmentation")

    def service_fields(self, result: Any, emb: EmbeddingConfig) -> dict[str, Any]:
        """Segment-row fields of one segment the service cut (its position, detail level)."""
        return {}

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
            + usage.audio_seconds * prices.audio_per_second
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


class TimedMedia(Modality):
    """Audio and video: segments placed by seconds, priced by the second."""

    position_fields: ClassVar[tuple[str, ...]] = ("start_s", "end_s")

    def hinted(self, path: str) -> bool:
        """The file's name says audio or video (either: the streams decide which)."""
        from pipelines.modalities import current

        named = current().for_path(path)
        return isinstance(named, TimedMedia)

    def estimate_tokens(self, row: Mapping[str, Any]) -> int:
        return tokens.media_tokens(segment_seconds(row))

    def extent(self, path: str | None, text: str | None, seg: SegmentationConfig) -> Extent:
        if path is None:
            return Extent()
        try:
            import av

            with av.open(path, "r", metadata_errors="replace") as container:
                if container.duration is None:
                    return Extent()
                seconds = float(container.duration) / 1_000_000  # AV_TIME_BASE
        except Exception:  # the decoder says what is wrong with the file
            return Extent()
        window = getattr(seg, f"{self.name}_window_s", None)
        overlap = getattr(seg, f"{self.name}_overlap_s", 0.0) or 0.0
        segments = None
        if window:
            segments = max(1, math.ceil(max(0.0, seconds - overlap) / (window - overlap)))
        return Extent(media_seconds=seconds, segments=segments)

    def usage(self, row: Mapping[str, Any]) -> Usage:
        return Usage(media_seconds=segment_seconds(row) or 0.0)

    def service_fields(self, result: Any, emb: EmbeddingConfig) -> dict[str, Any]:
        return {"start_s": result.start_s, "end_s": result.end_s}


# ---- the model's four input kinds, for modalities to send ----------------------------------------


def _where(emb: EmbeddingConfig, purpose: str | None = None) -> dict[str, Any]:
    return {"purpose": purpose or emb.index_purpose, "dimension": emb.dimension}


def _media(row: Mapping[str, Any], what: str) -> tuple[bytes | None, str, dict[str, Any]]:
    """The row's media (bytes, or where it is on S3) and format, checked before a request."""
    from pipelines.bedrock.errors import RequestValidationError

    data, s3_uri = row.get("input_bytes"), row.get("input_s3_uri")
    if data is None and not s3_uri:
        raise RequestValidationError(
            "row.input_bytes", f"{what} segment needs input_bytes or input_s3_uri"
        )
    fmt = row.get("input_format")
    if not fmt:
        raise RequestValidationError("row.input_format", f"{what} segment needs a format")
    located = {"s3_uri": str(s3_uri)} if data is None else {}
    return (bytes(data) if data is not None else None), str(fmt), located


def valid(request: EmbeddingRequest) -> EmbeddingRequest:
    """``request``, validated (what the service would refuse raises RequestValidationError)."""
    request.validate()
    return request


def text_request(
    row: Mapping[str, Any], emb: EmbeddingConfig, purpose: str | None = None
) -> EmbeddingRequest:
    """A text input: the row's ``input_text`` (or its ``input_s3_uri``)."""
    from pipelines.bedrock.errors import RequestValidationError
    from pipelines.bedrock.request import EmbeddingRequest

    text, s3_uri = row.get("input_text"), row.get("input_s3_uri")
    if text is None and s3_uri is None:
        raise RequestValidationError("row.input_text", "a text segment needs input_text")
    return valid(
        EmbeddingRequest.for_text(
            text,
            s3_uri=s3_uri if text is None else None,
            truncation_mode=emb.text_truncation_mode,
            **_where(emb, purpose),
        )
    )


def image_request(
    row: Mapping[str, Any], emb: EmbeddingConfig, detail_level: str, purpose: str | None = None
) -> EmbeddingRequest:
    """An image input (png, jpeg, gif, webp) at ``detail_level`` unless the row names one."""
    from pipelines.bedrock.request import EmbeddingRequest

    data, fmt, located = _media(row, "an image")
    detail = row.get("detail_level") or detail_level
    return valid(EmbeddingRequest.for_image(data, fmt, detail, **located, **_where(emb, purpose)))


def audio_request(
    row: Mapping[str, Any], emb: EmbeddingConfig, purpose: str | None = None
) -> EmbeddingRequest:
    """An audio input (mp3, wav, ogg) of at most 30 s."""
    from pipelines.bedrock.request import EmbeddingRequest

    data, fmt, located = _media(row, "an audio")
    return valid(EmbeddingRequest.for_audio(data, fmt, **located, **_where(emb, purpose)))


def video_request(
    row: Mapping[str, Any], emb: EmbeddingConfig, purpose: str | None = None
) -> EmbeddingRequest:
    """A video input of at most 30 s, with the use case's embedding mode."""
    from pipelines.bedrock.request import EmbeddingRequest

    data, fmt, located = _media(row, "a video")
    mode = emb.video_embedding_mode
    return valid(EmbeddingRequest.for_video(data, fmt, mode, **located, **_where(emb, purpose)))


def staged(emb: EmbeddingConfig, source_uri: str) -> dict[str, Any]:
    """Keyword arguments of a request for a whole asset staged at ``source_uri`` (service mode)."""
    return {"s3_uri": source_uri, **_where(emb)}


# The column :func:`pipelines.core.plan.asset_blocks` adds to the asset rows of a decode task:
# ``"i/n"`` for the i-th of n parts of an asset split by :meth:`Modality.split`, null for a
# whole asset.
PART_COLUMN = "part"
# Least estimated work of one part (about 5 s of decoding): below it, a split costs more in
# opening the asset again than it gains.
MIN_PART_WORK = 8 * 1024 * 1024
MAX_PARTS = 64


def split_parts(work: float, max_work: float) -> int:
    """Parts of at most about ``max_work`` each, none under :data:`MIN_PART_WORK`."""
    if max_work <= 0 or work <= max_work:
        return 1
    by_goal = math.ceil(work / max_work)
    by_floor = int(work // MIN_PART_WORK)
    return max(1, min(by_goal, by_floor, MAX_PARTS))


def asset_part(asset: Mapping[str, Any]) -> tuple[int, int] | None:
    """``(i, n)`` when the asset row is the i-th of n parts of its asset, else None."""
    part = asset.get(PART_COLUMN)
    if not part:
        return None
    i, n = (int(x) for x in str(part).split("/"))
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"bad asset part {part!r}")
    return i, n


def part_segments(asset: Mapping[str, Any], count: int) -> range:
    """The segment indices of ``[0, count)`` this asset row decodes: all of them for a whole
    asset; for part i of n, ``[ceil(i * count / n), ceil((i + 1) * count / n))``, so the parts
    are contiguous, disjoint, cover every segment, and part 0 is never empty when count >= 1."""
    part = asset_part(asset)
    if part is None:
        return range(count)
    i, n = part
    return range(-(-i * count // n), -(-(i + 1) * count // n))


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

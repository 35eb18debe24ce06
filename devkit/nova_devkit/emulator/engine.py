"""What the endpoint does with a validated request: load, check limits, decode, embed.

``prepare`` does the expensive and failure-prone part (S3 reads, decoding, limit checks) and
counts tokens, so that the server can apply its token quota *before* answering; ``embed`` turns a
prepared request into the response's ``embeddings`` list; ``segment`` does the async job's work.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nova_devkit.emulator import features as F
from nova_devkit.emulator.config import EmulatorConfig
from nova_devkit.emulator.errors import ApiError, validation
from nova_devkit.emulator.media import DecodedMedia, MediaError, decode_image, decode_media
from nova_devkit.emulator.validate import SEGMENTED, EmbeddingRequest, Source
from pipelines.bedrock.tokens import CHARS_PER_TOKEN, IMAGE_TOKENS, TEXT_MAX_TOKENS
from pipelines.bedrock.tokens import media_tokens as estimate_media_tokens
from pipelines.bedrock.tokens import text_tokens as estimate_text_tokens

MB = 1024 * 1024
# Source-size limits of the API doc's table (sync from S3 / async).
SYNC_S3_MAX_BYTES = {"text": 1 * MB, "image": 50 * MB, "audio": 100 * MB, "video": 100 * MB}
ASYNC_MAX_BYTES = {"text": 634 * MB, "image": 50 * MB, "audio": 1024 * MB, "video": 2048 * MB}
ASYNC_MAX_SECONDS = 2 * 3600.0
SEGMENT_CAPS = {"text": 1900, "audio": 1434, "video": 1434}
# Text beyond this many characters exceeds the 8K-token context (by the shared estimate).
TEXT_MAX_CHARS_IN_CONTEXT = int(TEXT_MAX_TOKENS * CHARS_PER_TOKEN)

S3Reader = Callable[[str, int], bytes]


@dataclass
class Prepared:
    """A request whose content is loaded, decoded and within limits."""

    req: EmbeddingRequest
    tokens: int
    text: str | None = None
    truncated_len: int | None = None
    thumb: np.ndarray | None = None
    # An image's bytes' hash when its content is not decoded (image_content_features=false).
    digest: bytes | None = None
    media: DecodedMedia | None = None
    seconds: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def truncate_text(text: str, mode: str, path: str) -> tuple[str, int | None]:
    """Apply ``truncationMode`` to text over the context; returns (kept text, kept length)."""
    if estimate_text_tokens(len(text)) <= TEXT_MAX_TOKENS:
        return text, None
    if mode == "NONE":
        raise validation(
            f"Malformed input request: {path}: input is about "
            f"{estimate_text_tokens(len(text))} tokens, over the {TEXT_MAX_TOKENS}-token limit "
            "(truncationMode NONE)"
        )
    keep = TEXT_MAX_CHARS_IN_CONTEXT
    kept = text[:keep] if mode == "END" else text[-keep:]
    return kept, len(kept)


def cut_text(text: str, max_chars: int) -> list[tuple[int, int]]:
    """Segments of at most ``max_chars`` characters, cut at whitespace: (start, end) slices."""
    out: list[tuple[int, int]] = []
    pos, n = 0, len(text)
    while pos < n:
        while pos < n and text[pos].isspace():
            pos += 1
        if pos >= n:
            break
        end = min(pos + max_chars, n)
        if end < n and not text[end].isspace():
            cut = end - 1
            while cut > pos and not text[cut].isspace():
                cut -= 1
            if cut > pos:  # a single word longer than max_chars is cut hard
                end = cut
        stop = end
        while stop > pos and text[stop - 1].isspace():
            stop -= 1
        out.append((pos, stop))
        pos = end
    return out


def media_windows(duration: float, seconds: int, tolerance: float) -> list[tuple[float, float]]:
    """Consecutive windows of ``seconds`` covering ``duration`` (a codec's tail padding shorter
    than ``tolerance`` does not open a window of its own)."""
    n = max(1, math.ceil(max(0.0, duration - tolerance) / seconds))
    # The last window runs to the end, absorbing the padding.
    return [
        (float(i * seconds), duration if i == n - 1 else float((i + 1) * seconds)) for i in range(n)
    ]


class EmbeddingEngine:
    """Loads, checks and embeds requests for one server (``cfg`` is read at call time)."""

    def __init__(self, cfg: Callable[[], EmulatorConfig], read_s3: S3Reader) -> None:
        self._cfg = cfg
        self._read_s3 = read_s3

    # -- loading ---------------------------------------------------------------------------

    def _load(self, src: Source, path: str, max_bytes: int) -> bytes:
        if src.data is not None:
            return src.data
        assert src.s3_uri is not None
        cfg = self._cfg()
        if src.bucket_owner is not None and src.bucket_owner != cfg.account_id:
            raise validation(
                f"Malformed input request: {path}.s3Location.bucketOwner: {src.bucket_owner} "
                "does not own the bucket"
            )
        try:
            return self._read_s3(src.s3_uri, max_bytes)
        except ApiError as exc:
            raise validation(
                f"Malformed input request: {path}.s3Location.uri: {exc.message}"
            ) from exc

    def prepare(self, req: EmbeddingRequest) -> Prepared:
        """Load the content, enforce the limits, decode, count tokens."""
        cfg = self._cfg()
        is_async = req.task_type == SEGMENTED
        limits = ASYNC_MAX_BYTES if is_async else SYNC_S3_MAX_BYTES
        path = req.field_path
        if req.kind == "text":
            if req.text is not None:
                text = req.text
                where = f"{path}.value"
            else:
                assert req.source is not None
                raw = self._load(req.source, f"{path}.source", limits["text"])
                where = f"{path}.source"
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise validation(
                        f"Malformed input request: {where}: object is not UTF-8 text"
                    ) from exc
                if not text:
                    raise validation(f"Malformed input request: {where}: object is empty")
            if not is_async and len(text) > cfg.text_max_chars:
                raise validation(
                    f"Malformed input request: {where}: {len(text)} characters is over the "
                    f"{cfg.text_max_chars}-character limit"
                )
            if is_async:
                return Prepared(req=req, tokens=estimate_text_tokens(len(text)), text=text)
            kept, truncated = truncate_text(text, req.truncation_mode or "NONE", path)
            return Prepared(
                req=req, tokens=estimate_text_tokens(len(kept)), text=kept, truncated_len=truncated
            )
        assert req.source is not None and req.format is not None
        max_bytes = limits[req.kind]
        data = self._load(req.source, f"{path}.source", max_bytes)
        if len(data) > max_bytes:
            raise validation(
                f"Malformed input request: {path}.source: {len(data)} bytes is over the "
                f"{max_bytes}-byte limit"
            )
        if req.kind == "image":
            features = cfg.image_content_features
            try:
                img = decode_image(
                    data, req.format, cfg.check_media_format, cfg.image_max_pixels, features
                )
            except MediaError as exc:
                raise validation(f"Malformed input request: {path}: {exc}") from exc
            return Prepared(
                req=req,
                tokens=IMAGE_TOKENS,
                thumb=img.thumb,
                digest=None if features else hashlib.blake2b(data, digest_size=16).digest(),
                meta={"width": img.width, "height": img.height},
            )
        limit = ASYNC_MAX_SECONDS if is_async else cfg.max_media_seconds
        try:
            media = decode_media(
                data,
                req.format,
                req.kind,
                check_format=cfg.check_media_format,
                max_seconds=limit + cfg.media_duration_tolerance_s,
                frame_rate=cfg.video_sample_fps,
            )
        except MediaError as exc:
            raise validation(f"Malformed input request: {path}: {exc}") from exc
        if media.over_limit:
            raise validation(
                f"Malformed input request: {path}: {req.kind} is longer than {limit:g} seconds"
            )
        if req.kind == "video" and not media.frames:
            raise validation(f"Malformed input request: {path}: video has no decodable frames")
        return Prepared(
            req=req,
            tokens=estimate_media_tokens(round(media.duration_s, 3)),
            media=media,
            seconds=media.duration_s,
            meta={"duration_s": round(media.duration_s, 3), "has_audio": media.has_audio},
        )

    # -- embedding ---------------------------------------------------------------------------

    def _media_vectors(
        self,
        p: Prepared,
        thumbs: list[np.ndarray],
        samples: np.ndarray | None,
        seed: int | None = None,
    ) -> list[tuple[str, np.ndarray]]:
        """(embeddingType, full 3072-d vector) for one audio/video window."""
        seed = self._cfg().seed if seed is None else seed
        if p.req.kind == "audio":
            empty = np.zeros(0, dtype=np.float32)
            feats = F.audio_features(samples if samples is not None else empty)
            return [("AUDIO", F.embed_features(feats, "audio", seed))]
        if p.req.embedding_mode == "AUDIO_VIDEO_COMBINED":
            feats = F.audio_video_features(thumbs, samples)
            return [("AUDIO_VIDEO_COMBINED", F.embed_features(feats, "audio_video", seed))]
        out = [("VIDEO", F.embed_features(F.video_features(thumbs), "video", seed))]
        if samples is not None and samples.size:
            # The AUDIO entry uses the audio space: a video's soundtrack matches the same audio
            # sent on its own. A video without an audio track gets no AUDIO entry.
            out.append(("AUDIO", F.embed_features(F.audio_features(samples), "audio", seed)))
        return out

    @staticmethod
    def _image_vector(p: Prepared, dim: int, seed: int) -> list[float]:
        if p.digest is not None:  # content not decoded: a vector drawn from the bytes' hash
            return F.embed_digest(p.digest, "image", dim, seed)
        assert p.thumb is not None
        return F.embed_image_thumbnail(p.thumb, dim, seed)

    def embed(self, p: Prepared, other: bool = False) -> list[dict[str, Any]]:
        """The synchronous response's ``embeddings`` list; ``other``: vectors of another seed
        (the scripted ``OtherVectors`` outcome)."""
        seed, dim = self._cfg().seed + (1 if other else 0), p.req.dimension
        if p.req.kind == "text":
            assert p.text is not None
            entry: dict[str, Any] = {
                "embeddingType": "TEXT",
                "embedding": F.embed_text(p.text, dim, seed),
            }
            if p.truncated_len is not None:
                entry["truncatedCharLength"] = p.truncated_len
            return [entry]
        if p.req.kind == "image":
            return [{"embeddingType": "IMAGE", "embedding": self._image_vector(p, dim, seed)}]
        assert p.media is not None
        thumbs = [t for _, t in p.media.frames]
        return [
            {"embeddingType": kind, "embedding": F.truncate(vec, dim)}
            for kind, vec in self._media_vectors(p, thumbs, p.media.audio, seed)
        ]

    def segment(self, p: Prepared) -> dict[str, tuple[str, list[dict[str, Any]]]]:
        """Async outputs: file name -> (embeddingType, records). ``embedding-image.json`` holds
        exactly one record."""
        cfg = self._cfg()
        dim, seed = p.req.dimension, cfg.seed
        if p.req.kind == "text":
            assert p.text is not None and p.req.max_length_chars is not None
            spans = cut_text(p.text, p.req.max_length_chars)
            if len(spans) > SEGMENT_CAPS["text"]:
                raise validation(
                    f"text makes {len(spans)} segments, over the cap of {SEGMENT_CAPS['text']}"
                )
            records: list[dict[str, Any]] = []
            for i, (start, end) in enumerate(spans):
                meta: dict[str, Any] = {
                    "segmentIndex": i,
                    "segmentStartCharPosition": start,
                    "segmentEndCharPosition": end,
                }
                try:
                    kept, truncated = truncate_text(
                        p.text[start:end], p.req.truncation_mode or "NONE", p.req.field_path
                    )
                except ApiError as exc:
                    records.append(
                        {
                            "segmentMetadata": meta,
                            "status": "FAILURE",
                            "failureReason": "INVALID_CONTENT",
                            "message": exc.message,
                        }
                    )
                    continue
                if truncated is not None:
                    meta["truncatedCharLength"] = truncated
                records.append(
                    {
                        "embedding": F.embed_text(kept, dim, seed),
                        "segmentMetadata": meta,
                        "status": "SUCCESS",
                    }
                )
            return {"embedding-text.jsonl": ("TEXT", records)}
        if p.req.kind == "image":
            rec = {
                "embedding": self._image_vector(p, dim, seed),
                "segmentMetadata": {"segmentIndex": 0},
                "status": "SUCCESS",
            }
            return {"embedding-image.json": ("IMAGE", [rec])}
        assert p.media is not None and p.req.duration_seconds is not None
        media = p.media
        windows = media_windows(
            media.duration_s, p.req.duration_seconds, cfg.media_duration_tolerance_s
        )
        cap = SEGMENT_CAPS[p.req.kind]
        if len(windows) > cap:
            raise validation(f"{p.req.kind} makes {len(windows)} segments, over the cap of {cap}")
        files: dict[str, tuple[str, list[dict[str, Any]]]] = {}
        names = {
            "AUDIO": "embedding-audio.jsonl",
            "VIDEO": "embedding-video.jsonl",
            "AUDIO_VIDEO_COMBINED": "embedding-audio-video.jsonl",
        }
        for i, (t_start, t_end) in enumerate(windows):
            thumbs = [t for ts, t in media.frames if t_start <= ts < t_end]
            if not thumbs and media.frames:
                # A window between two sampled frames shows the last frame before it.
                before = [t for ts, t in media.frames if ts < t_end]
                thumbs = [before[-1] if before else media.frames[0][1]]
            samples = None
            if media.audio is not None:
                a, b = int(t_start * F.SAMPLE_RATE), int(t_end * F.SAMPLE_RATE)
                samples = media.audio[a:b]
            for kind, vec in self._media_vectors(p, thumbs, samples):
                files.setdefault(names[kind], (kind, []))[1].append(
                    {
                        "embedding": F.truncate(vec, dim),
                        "segmentMetadata": {
                            "segmentIndex": i,
                            "segmentStartSeconds": round(t_start, 3),
                            "segmentEndSeconds": round(t_end, 3),
                        },
                        "status": "SUCCESS",
                    }
                )
        return files

"""Deterministic content features and their Matryoshka-consistent projection to 3072 dimensions.

These are *not* model embeddings. Each modality is reduced to a small hand-made feature vector that
changes little under re-encoding, resizing or re-cutting the same content (hashed n-grams for text,
a centred thumbnail and colour statistics for images, spectral shape for audio, averaged frame
features for video). A fixed, seeded Gaussian matrix per modality maps the features to 3072
dimensions; every prefix of a Gaussian projection is itself a Gaussian projection, so the
``d``-dimensional answer is exactly ``normalize(full[:d])`` and still preserves cosine similarity
(to within about ``1/sqrt(d)``). Separate matrices per modality keep features of different
modalities from colliding: a text and an image score near 0, never high by accident.
"""

from __future__ import annotations

import itertools
import re
import threading
import zlib
from collections.abc import Sequence

import numpy as np

FULL_DIMENSION = 3072
DIMENSIONS = (256, 384, 1024, 3072)

# Salts that pick each modality's projection matrix (and its fallback vector for empty content).
_MODALITY_SALT = {"text": 11, "image": 23, "audio": 37, "video": 41, "audio_video": 53}

# Text: three hashed groups (word unigrams, word bigrams, character trigrams) of this many buckets.
TEXT_BUCKETS = 1024
_TEXT_WEIGHTS = (0.55, 0.35, 0.45)
_WORD_RE = re.compile(r"\w+", re.UNICODE)
_SPACE_RE = re.compile(r"\s+")

# Images and video frames are reduced to this square thumbnail (RGB, 0..1) before features.
THUMB = 32
THUMB_FEATURES = 64 + 48 + 24 + 2
# Audio analysis: 16 kHz mono, 32 ms frames, 16 ms hop, 32 mel-spaced bands, 40 dB floor.
SAMPLE_RATE = 16_000
_FRAME = 512
_HOP = 256
_BANDS = 32
_FLOOR = 1e-4

_lock = threading.Lock()
_projections: dict[tuple[int, str, int], np.ndarray] = {}


def _unit(x: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(x))
    return x / n if n > 1e-12 else np.zeros_like(x)


def projection(seed: int, modality: str, n_features: int) -> np.ndarray:
    """The fixed ``3072 x n_features`` Gaussian matrix of a modality (cached per process)."""
    key = (seed, modality, n_features)
    with _lock:
        mat = _projections.get(key)
        if mat is None:
            rng = np.random.default_rng([seed, _MODALITY_SALT[modality], n_features])
            mat = rng.standard_normal((FULL_DIMENSION, n_features), dtype=np.float32)
            _projections[key] = mat
        return mat


def embed_features(features: np.ndarray, modality: str, seed: int) -> np.ndarray:
    """Project a feature vector to the full, L2-normalised 3072-d vector (float64)."""
    f = np.asarray(features, dtype=np.float32)
    if float(np.linalg.norm(f)) < 1e-9:
        # Empty content (silence, blank text after tokenising): a fixed per-modality direction,
        # so the answer is still deterministic and normalised.
        rng = np.random.default_rng([seed, _MODALITY_SALT[modality], 0])
        return _unit(rng.standard_normal(FULL_DIMENSION))
    v = projection(seed, modality, f.shape[0]) @ f
    return _unit(v.astype(np.float64))


def truncate(full: np.ndarray, dimension: int) -> list[float]:
    """The ``dimension``-d vector: the normalised prefix of the full vector (Matryoshka)."""
    if dimension not in DIMENSIONS:
        raise ValueError(f"dimension must be one of {DIMENSIONS}")
    vector: list[float] = _unit(full[:dimension]).tolist()
    return vector


# --- text ---------------------------------------------------------------------------------


def _hashed(items: Sequence[str], salt: bytes) -> np.ndarray:
    out = np.zeros(TEXT_BUCKETS, dtype=np.float64)
    if not items:
        return out
    # crc32 is stable across processes (unlike hash()), which keeps vectors reproducible.
    hashes = np.fromiter(
        (zlib.crc32(salt + s.encode("utf-8")) for s in items), dtype=np.uint64, count=len(items)
    )
    idx = (hashes % TEXT_BUCKETS).astype(np.int64)
    sign = np.where((hashes >> np.uint64(31)) & np.uint64(1), -1.0, 1.0)
    np.add.at(out, idx, sign)
    return out


def text_features(text: str) -> np.ndarray:
    """Signed hashed word unigrams, word bigrams and character trigrams (3 x 1024 values)."""
    norm = _SPACE_RE.sub(" ", text.lower()).strip()
    words = _WORD_RE.findall(norm)
    bigrams = [f"{a} {b}" for a, b in itertools.pairwise(words)]
    padded = f" {norm} "
    trigrams = [padded[i : i + 3] for i in range(max(0, len(padded) - 2))]
    groups = (
        _hashed(words, b"u:"),
        _hashed(bigrams, b"b:"),
        _hashed(trigrams, b"c:"),
    )
    return np.concatenate([w * _unit(g) for w, g in zip(_TEXT_WEIGHTS, groups, strict=True)])


def embed_text(text: str, dimension: int, seed: int) -> list[float]:
    """The emulator's text vector of ``dimension`` values."""
    return truncate(embed_features(text_features(text), "text", seed), dimension)


# --- images and frames --------------------------------------------------------------------


def _soft_histogram(values: np.ndarray, bins: int) -> np.ndarray:
    """Histogram of values in [0, 1] with linear (soft) binning, so that a small shift of a
    value (JPEG, resampling) moves weight gradually instead of jumping a bin edge."""
    pos = np.clip(values.ravel(), 0.0, 1.0) * (bins - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, bins - 1)
    frac = pos - lo
    hist = np.bincount(lo, weights=1.0 - frac, minlength=bins)
    hist += np.bincount(hi, weights=frac, minlength=bins)
    return hist / max(1.0, float(hist.sum()))


def thumbnail_features(rgb: np.ndarray) -> np.ndarray:
    """Features of a ``THUMB x THUMB x 3`` RGB array (uint8): ``THUMB_FEATURES`` values, centred.

    An 8x8 grayscale layout (mean/contrast normalised, so brightness matters little), a 4x4
    colour layout around mid-grey, soft per-channel histograms around uniform, and the amount of
    fine detail (edge energy). Coarse on purpose: resizing and re-encoding barely move them.
    """
    x = rgb.astype(np.float64) / 255.0
    gray = x @ np.array([0.299, 0.587, 0.114])
    g8 = gray.reshape(8, THUMB // 8, 8, THUMB // 8).mean(axis=(1, 3)).ravel()
    # Divide by the contrast, but not below a floor: a flat image's layout must stay ~0 rather
    # than blow codec noise up to full weight.
    g8 = (g8 - g8.mean()) / max(float(g8.std()), 0.1) / 8.0
    colour = x.reshape(4, THUMB // 4, 4, THUMB // 4, 3).mean(axis=(1, 3)).ravel() - 0.5
    hist = np.concatenate([_soft_histogram(x[..., c], 8) for c in range(3)]) - 1.0 / 8
    edges = np.array([np.abs(np.diff(gray, axis=1)).mean(), np.abs(np.diff(gray, axis=0)).mean()])
    return np.concatenate([0.6 * g8, 0.5 * _unit(colour), 0.5 * _unit(hist), 1.5 * edges - 0.1])


def image_to_thumbnail(img: object) -> np.ndarray:
    """A Pillow image -> ``THUMB x THUMB x 3`` uint8 RGB (EXIF orientation applied)."""
    from PIL import Image, ImageOps

    assert isinstance(img, Image.Image)
    im = ImageOps.exif_transpose(img)
    if im.mode not in ("RGB", "L"):
        # Composite transparency on white, as a page or a logo would be displayed.
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, rgba)
    im = im.convert("RGB").resize((THUMB, THUMB), Image.Resampling.BOX)
    return np.asarray(im, dtype=np.uint8)


def embed_digest(digest: bytes, modality: str, dimension: int, seed: int) -> list[float]:
    """A unit vector drawn from a content hash: the same bytes give the same vector, different
    bytes unrelated ones (no notion of similar content)."""
    salt = int.from_bytes(digest[:8], "little")
    rng = np.random.default_rng([seed, _MODALITY_SALT[modality], salt])
    return truncate(_unit(rng.standard_normal(FULL_DIMENSION)), dimension)


def embed_image_thumbnail(thumb: np.ndarray, dimension: int, seed: int) -> list[float]:
    """The emulator's image vector from a thumbnail."""
    return truncate(embed_features(thumbnail_features(thumb), "image", seed), dimension)


# --- audio ----------------------------------------------------------------------------------


def _mel_edges() -> np.ndarray:
    def mel(f: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + f / 700.0)

    lo, hi = mel(np.array(60.0)), mel(np.array(SAMPLE_RATE / 2))
    m = np.linspace(lo, hi, _BANDS + 1)
    hz = 700.0 * (10 ** (m / 2595.0) - 1.0)
    bins = np.round(hz / (SAMPLE_RATE / _FRAME)).astype(np.int64)
    # Make every band at least one FFT bin wide.
    for i in range(1, len(bins)):
        bins[i] = max(bins[i], bins[i - 1] + 1)
    return np.minimum(bins, _FRAME // 2 + 1)


def audio_features(samples: np.ndarray) -> np.ndarray:
    """Spectral-shape statistics of mono 16 kHz float samples: 64 values, centred.

    Per 32 ms frame: log energies in 32 mel bands, floored 40 dB under the frame's loudest band
    and centred across bands (so loudness and codec noise matter little). Then the mean and the
    (centred) standard deviation over the non-silent frames.
    """
    x = np.asarray(samples, dtype=np.float64)
    if x.size < _FRAME:
        x = np.pad(x, (0, _FRAME - x.size))
    n = 1 + (x.size - _FRAME) // _HOP
    idx = np.arange(_FRAME)[None, :] + _HOP * np.arange(n)[:, None]
    spec = np.abs(np.fft.rfft(x[idx] * np.hanning(_FRAME), axis=1)) ** 2
    edges = _mel_edges()
    bands = np.stack([spec[:, edges[i] : edges[i + 1]].sum(axis=1) for i in range(_BANDS)], axis=1)
    frame_energy = bands.sum(axis=1)
    loud = frame_energy > max(1e-9, float(frame_energy.max(initial=0.0)) * 1e-4)
    if not loud.any():
        return np.zeros(2 * _BANDS)
    b = bands[loud]
    logb = np.log10(np.maximum(b, b.max(axis=1, keepdims=True) * _FLOOR))
    logb -= logb.mean(axis=1, keepdims=True)
    mean = logb.mean(axis=0)
    # How much each band varies over time (speech and music vs steady tones), lightly weighted:
    # its common part (noise-floor bands flicker in every recording) would pull unrelated
    # sounds together.
    std = logb.std(axis=0)
    std -= std.mean()
    return np.concatenate([_unit(mean), 0.2 * _unit(std)])


def video_features(thumbs: Sequence[np.ndarray]) -> np.ndarray:
    """The mean of the sampled frames' thumbnail features (``THUMB_FEATURES`` values)."""
    if not thumbs:
        return np.zeros(THUMB_FEATURES)
    return np.mean([thumbnail_features(t) for t in thumbs], axis=0)


def audio_video_features(thumbs: Sequence[np.ndarray], samples: np.ndarray | None) -> np.ndarray:
    """Visual and audio features side by side (audio part zero for a silent-track video)."""
    visual = _unit(video_features(thumbs))
    audio = (
        _unit(audio_features(samples))
        if samples is not None and samples.size
        else np.zeros(2 * _BANDS)
    )
    return np.concatenate([0.8 * visual, 0.6 * audio])

"""The pages' PNG encoder: lossless for every layout it takes, and refuses what it cannot encode."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from pipelines.stages._png import encode_png


def _page_like(height: int, width: int, channels: int, seed: int) -> np.ndarray:
    """White with dark text-like strokes, a coloured block and noise: every filter case."""
    rng = np.random.default_rng(seed)
    page = np.full((height, width, channels), 255, np.uint8)
    page[5:9, 3:-3] = 20
    page[height // 2 :, : width // 3] = rng.integers(0, 256, channels, dtype=np.uint8)
    page[-6:, -7:] = rng.integers(0, 256, (6, 7, channels), dtype=np.uint8)
    return page


@pytest.mark.parametrize(("channels", "mode"), [(1, "L"), (2, "LA"), (3, "RGB"), (4, "RGBA")])
def test_decoding_gives_back_the_same_pixels(channels: int, mode: str) -> None:
    pixels = _page_like(31, 17, channels, seed=channels)
    image = Image.open(io.BytesIO(encode_png(pixels)))
    image.load()
    assert image.mode == mode and image.size == (17, 31)
    decoded = np.asarray(image).reshape(31, 17, channels)
    assert np.array_equal(decoded, pixels)


def test_a_two_dimensional_array_is_grey_and_a_strided_view_is_encoded_as_it_looks() -> None:
    grey = _page_like(12, 9, 1, seed=7)[:, :, 0]
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(encode_png(grey)))), grey)
    wide = _page_like(10, 20, 3, seed=8)
    view = wide[:, ::2]  # not contiguous
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(encode_png(view)))), view)


def test_a_page_compresses_like_a_png_should() -> None:
    page = np.full((600, 400, 3), 255, np.uint8)
    page[100:110, 50:350] = 0
    assert len(encode_png(page)) < page.nbytes / 100


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((4, 4, 3), np.uint16),
        np.zeros((4, 4, 5), np.uint8),
        np.zeros((0, 4, 3), np.uint8),
        np.zeros(4, np.uint8),
    ],
    ids=["uint16", "5 channels", "empty", "1-d"],
)
def test_what_png_cannot_hold_is_refused(bad: np.ndarray) -> None:
    with pytest.raises((TypeError, ValueError)):
        encode_png(bad)

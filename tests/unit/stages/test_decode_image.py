"""decode_image on generated photos, odd modes and broken files."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from nova_devkit.media import (
    EXIF_QUADRANTS,
    make_bomb_png,
    make_exif_rotated_jpeg,
    make_near_duplicate,
    make_product_photo,
    make_truncated_file,
)
from pipelines.config.schema import EmbeddingConfig, SegmentationConfig
from pipelines.core.rows import SEGMENT_COLUMNS
from pipelines.stages._decode_common import decoded_rows
from pipelines.stages.decode_image import decode_image

EMB = EmbeddingConfig()
API_FORMATS = {"png": "PNG", "jpeg": "JPEG", "gif": "GIF", "webp": "WEBP"}


def _decode(path: Path | str | None, **seg: Any) -> dict[str, Any]:
    asset = {"asset_id": "img", "uri": None if path is None else str(path), "modality": "image"}
    rows = list(decoded_rows(asset, decode_image(asset, SegmentationConfig(**seg), EMB)))
    assert len(rows) == 1
    assert set(rows[0]) == set(SEGMENT_COLUMNS)
    return rows[0]


def _output(row: dict[str, Any]) -> Image.Image:
    """The image the API would receive; checks it is well-formed and in an accepted format."""
    assert row["error_code"] is None, row["error_message"]
    assert row["input_kind"] == "image"
    assert row["detail_level"] == EMB.image_detail_level
    assert (row["segment_index"], row["segment_count"]) == (0, 1)
    im = Image.open(io.BytesIO(row["input_bytes"]))
    assert im.format == API_FORMATS[row["input_format"]]
    im.load()
    return im


def _arr(im: Image.Image) -> np.ndarray[Any, Any]:
    return np.asarray(im, dtype=np.float32)


# --- pass-through and re-encoding ----------------------------------------------------------------


def test_photo_within_caps_passes_through_unchanged(tmp_path: Path) -> None:
    path = make_product_photo(tmp_path / "p.jpg", seed=1)
    row = _decode(path)
    assert row["input_format"] == "jpeg"
    assert row["input_bytes"] == path.read_bytes()


@pytest.mark.parametrize("fmt", ["png", "webp", "gif"])
def test_accepted_formats_pass_through(tmp_path: Path, fmt: str) -> None:
    path = make_product_photo(tmp_path / f"p.{fmt}", seed=2, size=(160, 120))
    row = _decode(path)
    assert row["input_format"] == fmt
    assert row["input_bytes"] == path.read_bytes()


@pytest.mark.parametrize(("suffix", "expected"), [("jpg", "jpeg"), ("png", "png")])
def test_large_image_is_downscaled(tmp_path: Path, suffix: str, expected: str) -> None:
    path = make_product_photo(tmp_path / f"big.{suffix}", seed=3, size=(640, 480))
    im = _output(row := _decode(path, image_max_side=200))
    assert row["input_format"] == expected  # lossless sources stay lossless
    assert max(im.size) == 200
    assert im.size[1] == pytest.approx(150, abs=1)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    path = make_exif_rotated_jpeg(tmp_path / "rot.jpg", size=(200, 100))
    with Image.open(path) as stored:
        assert stored.size == (100, 200)  # stored sideways
    im = _output(_decode(path)).convert("RGB")
    assert im.size == (200, 100)
    for (x, y), name in {
        (20, 20): "top_left",
        (180, 20): "top_right",
        (20, 80): "bottom_left",
        (180, 80): "bottom_right",
    }.items():
        got = np.array(im.getpixel((x, y)), dtype=int)
        assert np.abs(got - np.array(EXIF_QUADRANTS[name])).max() < 30, name


def test_exif_rotation_and_downscale_together(tmp_path: Path) -> None:
    path = make_exif_rotated_jpeg(tmp_path / "rot.jpg", size=(400, 200))
    im = _output(_decode(path, image_max_side=100)).convert("RGB")
    assert im.size == (100, 50)
    red = np.array(im.getpixel((10, 10)), dtype=int)
    assert red[0] > 180 and red[1] < 80 and red[2] < 80


def test_cmyk_jpeg_becomes_rgb_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (64, 48), (0, 255, 255, 0)).save(path)  # pure red in CMYK
    row = _decode(path)
    im = _output(row)
    assert (row["input_format"], im.mode) == ("jpeg", "RGB")
    r, g, b = im.getpixel((32, 24))  # type: ignore[misc]
    assert r > 200 and g < 60 and b < 60


def test_palette_with_transparency_keeps_alpha_as_png(tmp_path: Path) -> None:
    path = tmp_path / "p.gif"
    im = Image.new("P", (40, 40), 0)
    im.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    im.paste(1, (0, 0, 20, 40))
    im.save(path, transparency=1)
    out = _output(row := _decode(path, image_max_side=20))  # force a re-encode
    assert (row["input_format"], out.mode) == ("png", "RGBA")
    assert out.getpixel((2, 10))[3] == 0  # type: ignore[index]
    assert out.getpixel((17, 10))[:3] == (255, 0, 0)  # type: ignore[index]


def test_opaque_alpha_is_dropped_on_reencode(tmp_path: Path) -> None:
    path = tmp_path / "rgba.png"
    Image.new("RGBA", (300, 100), (10, 200, 30, 255)).save(path)
    out = _output(_decode(path, image_max_side=150))
    assert out.mode == "RGB" and out.size == (150, 50)


def test_16_bit_greyscale_is_scaled_to_8_bits(tmp_path: Path) -> None:
    path = tmp_path / "deep.png"
    arr = np.zeros((20, 40), dtype=np.uint16)
    arr[:, 20:] = 65535
    arr[:, 10:20] = 32896  # 128 * 257
    Image.fromarray(arr).save(path)
    with Image.open(path) as src:
        assert src.mode.startswith("I")
    row = _decode(path)
    out = _output(row)
    assert (row["input_format"], out.mode) == ("png", "L")
    assert [out.getpixel((x, 5)) for x in (5, 15, 30)] == [0, 128, 255]


@pytest.mark.parametrize(("fmt", "mode"), [("TIFF", "RGB"), ("BMP", "RGB"), ("TIFF", "LA")])
def test_other_formats_are_reencoded_losslessly(tmp_path: Path, fmt: str, mode: str) -> None:
    path = tmp_path / f"x.{fmt.lower()}"
    colour = (40, 120) if mode == "LA" else (40, 120, 200)
    Image.new(mode, (30, 20), colour).save(path, format=fmt)
    out = _output(row := _decode(path))
    assert row["input_format"] == "png"
    assert out.size == (30, 20)
    assert out.getpixel((5, 5)) == colour


def test_animated_gif_uses_the_first_frame(tmp_path: Path) -> None:
    path = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    with Image.open(path) as src:
        assert getattr(src, "n_frames", 1) == 3
    out = _output(row := _decode(path))
    assert row["input_format"] == "png"
    assert getattr(out, "n_frames", 1) == 1
    assert out.convert("RGB").getpixel((16, 16)) == (255, 0, 0)


def test_near_duplicate_decodes_to_a_different_image(tmp_path: Path) -> None:
    src = make_product_photo(tmp_path / "a.jpg", seed=4)
    dup = make_near_duplicate(src, tmp_path / "b.jpg", seed=4)
    other = make_product_photo(tmp_path / "c.jpg", seed=5)
    a, b, c = (_output(_decode(p)).convert("RGB") for p in (src, dup, other))
    assert b.size != a.size
    assert 0.75 < b.size[0] / a.size[0] < 0.85

    def diff(x: Image.Image, y: Image.Image) -> float:
        small = (64, 48)
        return float(np.abs(_arr(x.resize(small)) - _arr(y.resize(small))).mean())

    assert diff(a, b) < diff(a, c) / 2


def test_generated_photos_are_deterministic_and_differ_by_seed(tmp_path: Path) -> None:
    a = make_product_photo(tmp_path / "a.png", seed=5, size=(80, 60)).read_bytes()
    b = make_product_photo(tmp_path / "b.png", seed=5, size=(80, 60)).read_bytes()
    c = make_product_photo(tmp_path / "c.png", seed=6, size=(80, 60)).read_bytes()
    assert a == b and a != c


# --- refusals ------------------------------------------------------------------------------------


def test_decompression_bomb_is_refused_from_the_header(tmp_path: Path) -> None:
    path = make_bomb_png(tmp_path / "bomb.png", 100_000, 100_000)
    assert path.stat().st_size < 1000
    row = _decode(path)
    assert row["error_code"] == "image_too_large"
    assert row["input_bytes"] is None


def test_configured_pixel_limit_is_enforced(tmp_path: Path) -> None:
    path = make_product_photo(tmp_path / "p.jpg", seed=1, size=(200, 100))
    assert _decode(path, image_max_pixels=20_000)["error_code"] is None
    assert _decode(path, image_max_pixels=19_999)["error_code"] == "image_too_large"
    # Below Pillow's own bomb error threshold, the configured limit still refuses.
    bomb = make_bomb_png(tmp_path / "mid.png", 12_000, 12_000)
    assert _decode(bomb)["error_code"] == "image_too_large"


@pytest.mark.parametrize("suffix", ["jpg", "png"])
def test_truncated_images_are_corrupt(tmp_path: Path, suffix: str) -> None:
    src = make_product_photo(tmp_path / f"p.{suffix}", seed=7, size=(200, 150))
    cut = make_truncated_file(src, tmp_path / f"cut.{suffix}", 0.6)
    assert _decode(cut)["error_code"] == "image_corrupt"


def test_broken_and_foreign_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "notes.png"
    text.write_text("this is not an image at all\n" * 10)
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    assert _decode(empty)["error_code"] == "empty_file"
    assert _decode(text)["error_code"] == "image_unsupported"
    assert _decode(garbage)["error_code"] == "image_corrupt"
    assert _decode(tmp_path / "missing.jpg")["error_code"] == "file_not_found"
    assert _decode(None)["error_code"] == "missing_uri"
    row = _decode(text)
    assert row["error_stage"] == "decode" and row["asset_id"] == "img"
    assert row["segment_index"] == -1


def test_multipage_tiff_gives_its_first_page_or_every_page(tmp_path: Path) -> None:
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
    pages = [Image.new("RGB", (40, 30), c) for c in colours]
    path = tmp_path / "scan.tiff"
    pages[0].save(path, save_all=True, append_images=pages[1:])
    asset = {"asset_id": "scan", "uri": str(path), "modality": "image"}

    first = list(decoded_rows(asset, decode_image(asset, SegmentationConfig(), EMB)))
    assert len(first) == 1 and first[0]["page"] is None

    seg = SegmentationConfig(tiff_pages="all")
    rows = list(decoded_rows(asset, decode_image(asset, seg, EMB)))
    assert [(r["segment_index"], r["segment_count"], r["page"]) for r in rows] == [
        (0, 3, 1),
        (1, 3, 2),
        (2, 3, 3),
    ]
    for row, colour in zip(rows, colours, strict=True):
        with Image.open(io.BytesIO(row["input_bytes"])) as im:
            assert im.convert("RGB").getpixel((5, 5)) == colour
    # A single-page image is one segment either way.
    single = tmp_path / "one.png"
    pages[0].save(single)
    one = {**asset, "uri": str(single)}
    assert len(list(decoded_rows(one, decode_image(one, seg, EMB)))) == 1

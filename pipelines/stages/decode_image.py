"""Image decoder: one image asset -> one segment row with bytes the model accepts.

What it does, in order:

1. Opens the file lazily (Pillow reads only the header) and refuses decompression bombs before
   any pixel is decoded: ``width * height > seg.image_max_pixels`` is ``image_too_large`` (the
   meaning of Pillow's ``Image.MAX_IMAGE_PIXELS``, but a hard refusal at the configured limit
   rather than a warning; the process-wide Pillow setting is not touched). Pillow's own hard
   stop (``2 * Image.MAX_IMAGE_PIXELS``, about 179 MP by default) still applies if the
   configured limit is set above it.
2. Keeps the original bytes when nothing needs to change: the format is one the API accepts
   (png, jpeg, gif, webp), the image is a single frame in a plain mode, it has no EXIF rotation,
   its longest side is within ``seg.image_max_side`` and the file is under the inline size cap.
3. Otherwise decodes (JPEGs are decoded at a reduced DCT scale when they will be downscaled),
   applies the EXIF orientation (``ImageOps.exif_transpose``), normalises the mode (CMYK, YCbCr,
   LAB -> RGB; 16-bit and float greyscale scaled to 8 bits; palette -> RGB or RGBA), downscales
   so the longest side is at most ``seg.image_max_side`` and re-encodes: PNG when the image has
   real transparency or came from a lossless format, JPEG otherwise (and JPEG as the fallback
   when a PNG would exceed the inline size cap).

Every format the installed Pillow reads is converted (TGA, SGI, netpbm, ICO, PSD, JPEG 2000,
MPO, AVIF, QOI, DDS, XBM, XPM, ...). Multi-frame formats take one documented frame (the table is
in ``docs/formats.md``): the **first frame** of animations (GIF, APNG, animated WebP, AVIF
sequences, FLI), re-encoded as a still image so the result does not depend on how the service
treats animation; the first page of a multi-page TIFF or DCX; the primary (first) image of an
MPO; the largest image of an ICO, CUR or ICNS; the merged composite of a layered PSD. Colour
profiles are not applied (CMYK is converted with Pillow's plain formula).

Formats Pillow identifies but cannot decode here are ``image_unsupported`` (not
``image_corrupt``): EPS without Ghostscript, and the formats Pillow only reads the header of
(WMF/EMF, GRIB, BUFR, HDF5); so is HEIF without a HEIF plugin.

Dead-letter codes (stage ``decode``): ``missing_uri``, ``bad_uri``, ``file_not_found``,
``file_unreadable``, ``empty_file``, ``image_unsupported`` (not an image format Pillow reads),
``image_corrupt`` (recognised but truncated or damaged), ``image_too_large`` (over the pixel
limit, or still over the inline size cap after re-encoding).
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from pipelines.config.schema import EmbeddingConfig, SegmentationConfig
from pipelines.core import codes
from pipelines.core.errors import RecordError
from pipelines.core.rows import segment_row
from pipelines.stages._decode_common import (
    MAX_INLINE_IMAGE_BYTES,
    describe,
    local_source,
)

if TYPE_CHECKING:
    from PIL import Image

STAGE = "decode"

# Pillow format name -> the API's image format, for files we may pass through unchanged.
_PASSTHROUGH_FORMATS = {"PNG": "png", "JPEG": "jpeg", "MPO": "jpeg", "GIF": "gif", "WEBP": "webp"}
# Modes a passed-through file may have (anything else is normalised first).
_PLAIN_MODES = frozenset({"1", "L", "LA", "P", "RGB", "RGBA"})
# Sources whose pixels are exact: re-encode them losslessly (PNG) when the result fits.
_LOSSLESS_FORMATS = frozenset(
    {"PNG", "GIF", "BMP", "TIFF", "PPM", "PCX", "TGA", "ICO", "DIB", "SGI", "QOI", "XBM"}
)
# Magic numbers of formats we know, to tell "damaged image" from "not an image at all".
_IMAGE_MAGIC = (
    b"\x89PNG",
    b"\xff\xd8\xff",
    b"GIF87a",
    b"GIF89a",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
)
JPEG_QUALITY = 90


def decode_image(
    asset: Mapping[str, Any],
    seg: SegmentationConfig,
    emb: EmbeddingConfig,
    s3_endpoint_url: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield the single segment row for an image asset.

    The row has ``input_kind="image"``, ``input_format`` in png/jpeg/gif/webp, ``input_bytes``
    and ``detail_level=emb.image_detail_level``. Raises :class:`RecordError` for a bad image.
    """
    with local_source(asset, s3_endpoint_url, "an image asset") as source:
        if seg.tiff_pages == "all":
            pages = list(encode_tiff_pages(source, seg.image_max_side, seg.image_max_pixels))
            if len(pages) > 1:
                for k, (data, fmt) in enumerate(pages):
                    yield segment_row(
                        asset,
                        segment_index=k,
                        segment_count=len(pages),
                        input_kind="image",
                        input_format=fmt,
                        input_bytes=data,
                        detail_level=emb.image_detail_level,
                        page=k + 1,
                    )
                return
        data, fmt = encode_image_file(source, seg.image_max_side, seg.image_max_pixels)
    yield segment_row(
        asset,
        segment_index=0,
        segment_count=1,
        input_kind="image",
        input_format=fmt,
        input_bytes=data,
        detail_level=emb.image_detail_level,
    )


def encode_tiff_pages(path: str, max_side: int, max_pixels: int) -> Iterator[tuple[bytes, str]]:
    """Every page of a multi-page TIFF, encoded like a single image (PNG: TIFF is lossless); a
    file that is not a multi-page TIFF yields nothing (the caller encodes it as one image)."""
    from PIL import Image

    try:
        im = Image.open(path)
    except Exception:
        return  # encode_image_file says why, with the right code
    with im:
        frames = int(getattr(im, "n_frames", 1))
        if im.format != "TIFF" or frames < 2:
            return
        for k in range(frames):
            try:
                im.seek(k)
                width, height = im.size
                if width * height > max_pixels:
                    raise _refused(
                        codes.IMAGE_TOO_LARGE,
                        f"page {k + 1}: {width}x{height} is over segmentation.image_max_pixels",
                    )
                page = _normalise_mode(im.copy())
                if max(page.size) > max_side:
                    page.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
                yield _encode(page, prefer_png=True)
            except RecordError:
                raise
            except Exception as exc:
                raise _refused(codes.IMAGE_CORRUPT, f"page {k + 1}: {describe(exc)}") from exc


def encode_image_file(path: str, max_side: int, max_pixels: int) -> tuple[bytes, str]:
    """The bytes and API format (png/jpeg/gif/webp) to send for the image file at ``path``.

    Raises :class:`RecordError` with a dead-letter code for bad images.
    """
    from PIL import Image, UnidentifiedImageError

    with warnings.catch_warnings():
        # We enforce our own limit below; Pillow's warning would only be noise.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(path)
        except Image.DecompressionBombError as exc:
            raise _refused(codes.IMAGE_TOO_LARGE, str(exc)) from exc
        except UnidentifiedImageError as exc:
            raise _not_identified(path) from exc
        except Exception as exc:  # damaged headers raise many types (SyntaxError, ValueError...)
            raise _refused(codes.IMAGE_CORRUPT, describe(exc)) from exc
        with im:
            _check_decodable(im)
            width, height = im.size
            if width < 1 or height < 1:
                raise _refused(codes.IMAGE_CORRUPT, f"invalid image size {width}x{height}")
            if width * height > max_pixels:
                raise _refused(
                    codes.IMAGE_TOO_LARGE,
                    f"{width}x{height} = {width * height} pixels is over the limit of "
                    f"{max_pixels} (segmentation.image_max_pixels)",
                )
            try:
                return _encode_open_image(im, path, max_side)
            except RecordError:
                raise
            except Exception as exc:  # truncated data, bad chunks, decoder errors
                raise _refused(codes.IMAGE_CORRUPT, describe(exc)) from exc


def _check_decodable(im: Image.Image) -> None:
    """Raise image_unsupported for an image Pillow identified but cannot decode here."""
    from PIL import EpsImagePlugin, ImageFile

    if isinstance(im, ImageFile.StubImageFile):
        raise _refused(
            codes.IMAGE_UNSUPPORTED,
            f"{im.format} is identified but not decoded by the installed Pillow",
        )
    if im.format == "EPS" and not EpsImagePlugin.has_ghostscript():
        raise _refused(codes.IMAGE_UNSUPPORTED, "EPS needs Ghostscript, which is not installed")


def _not_identified(path: str) -> RecordError:
    with open(path, "rb") as fh:
        head = fh.read(16)
    known = head.startswith(_IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")
    if known:
        return _refused(codes.IMAGE_CORRUPT, "the file has an image signature but cannot be read")
    return _refused(codes.IMAGE_UNSUPPORTED, "not an image format that can be read")


def _encode_open_image(im: Image.Image, path: str, max_side: int) -> tuple[bytes, str]:
    from PIL import ImageOps

    src_format = im.format or ""
    width, height = im.size
    try:
        orientation = int(im.getexif().get(0x0112, 1))
    except Exception:  # a damaged EXIF block must not sink a readable image
        orientation = 1
    animated = getattr(im, "n_frames", 1) > 1
    scale = min(1.0, max_side / max(width, height))
    api_format = _PASSTHROUGH_FORMATS.get(src_format)
    if (
        api_format is not None
        and scale == 1.0
        and orientation in (0, 1)
        and not animated
        and im.mode in _PLAIN_MODES
        and os.path.getsize(path) <= MAX_INLINE_IMAGE_BYTES
    ):
        im.load()  # decode once: a truncated file must not pass through unchecked
        with open(path, "rb") as fh:
            return fh.read(), api_format

    if scale < 1.0 and src_format in ("JPEG", "MPO"):
        # Let libjpeg decode at 1/2, 1/4 or 1/8 scale: no full-size copy of a big photo.
        im.draft(None, (max(1, round(width * scale)), max(1, round(height * scale))))
    im.load()
    out = im
    if orientation not in (0, 1):
        out = ImageOps.exif_transpose(im) or im
    out = _normalise_mode(out)
    longest = max(out.size)
    if longest > max_side:
        from PIL import Image

        out.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=3.0)
    lossless = src_format in _LOSSLESS_FORMATS or (
        src_format == "WEBP" and bool(getattr(im, "info", {}).get("lossless"))
    )
    return _encode(out, prefer_png=lossless)


def _normalise_mode(im: Image.Image) -> Image.Image:
    """An image in L, LA, RGB or RGBA (alpha kept only if some pixel is not opaque)."""
    import numpy as np
    from PIL import Image

    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        if mode.startswith("I;16"):
            arr = arr / 257.0
        else:
            lo, hi = float(arr.min()), float(arr.max())
            arr = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), mode="L")
    if mode == "1":
        return im.convert("L")
    if mode == "P" or mode == "PA":
        has_alpha = mode == "PA" or "transparency" in im.info
        im = im.convert("RGBA" if has_alpha else "RGB")
    elif mode in ("L", "RGB") and "transparency" in im.info:
        im = im.convert("LA" if mode == "L" else "RGBA")
    elif mode == "La":
        im = im.convert("LA")
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        # CMYK, YCbCr, LAB, HSV, RGBa, RGBX ...
        im = im.convert("RGBA" if "A" in mode or "a" in mode else "RGB")
    if im.mode in ("LA", "RGBA"):
        alpha = im.getchannel("A")
        extrema: Any = alpha.getextrema()  # (min, max) for a single band
        if extrema[0] == 255:
            im = im.convert("L" if im.mode == "LA" else "RGB")
    return im


def _encode(im: Image.Image, prefer_png: bool) -> tuple[bytes, str]:
    has_alpha = im.mode in ("LA", "RGBA")
    if has_alpha or prefer_png:
        buf = io.BytesIO()
        im.save(buf, format="PNG", optimize=False, compress_level=6)
        if buf.tell() <= MAX_INLINE_IMAGE_BYTES:
            return buf.getvalue(), "png"
        if has_alpha:
            # Too big as PNG: flatten onto white and fall back to JPEG.
            from PIL import Image

            flat = Image.new("RGB", im.size, (255, 255, 255))
            flat.paste(im.convert("RGBA"), mask=im.getchannel("A"))
            im = flat
    for quality in (JPEG_QUALITY, 75, 60):
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=quality, optimize=False)
        if buf.tell() <= MAX_INLINE_IMAGE_BYTES:
            return buf.getvalue(), "jpeg"
    raise _refused(
        codes.IMAGE_TOO_LARGE,
        f"still over {MAX_INLINE_IMAGE_BYTES} bytes as JPEG at quality 60 "
        f"({im.size[0]}x{im.size[1]}); lower segmentation.image_max_side",
    )


def _refused(code: str, message: str) -> RecordError:
    return RecordError(STAGE, code, message)

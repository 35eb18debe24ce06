"""Images: one segment per image, re-encoded to a format the model accepts when needed.

Recognised by signature (:meth:`Image.sniff`: PNG, JPEG, GIF, WebP, TIFF, HEIF/AVIF, JPEG 2000,
PSD, QOI, DDS, ICNS, Sun raster, FITS, netpbm binary and plain, XPM, XBM; BMP, ICO/CUR, SGI and
PCX weakly) and, for a local file the first bytes leave open, by Pillow opening it
(:meth:`Image.identify`: TGA, IM and any other format the installed Pillow reads).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pipelines.bedrock import tokens
from pipelines.modalities.base import (
    FingerprintFields,
    Modality,
    Usage,
    image_request,
    staged,
    valid,
)
from pipelines.modalities.probing import extension

if TYPE_CHECKING:
    from pipelines.bedrock.request import EmbeddingRequest
    from pipelines.config.schema import EmbeddingConfig, SegmentationConfig

# ftyp major brands of still images (HEIF/AVIF).
IMAGE_BRANDS = frozenset((b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis"))
_DIB_HEADER_SIZES = (12, 40, 52, 56, 64, 108, 124)
# Signatures at offset 0 that are images for sure.
_MAGIC = (
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",  # JPEG, MPO
    b"GIF87a",
    b"GIF89a",
    b"II*\x00",
    b"MM\x00*",
    b"II+\x00",  # BigTIFF
    b"MM\x00+",
    b"\x00\x00\x00\x0cjP  \r\n\x87\n",  # JPEG 2000 (jp2)
    b"\xff\x4f\xff\x51",  # JPEG 2000 codestream (j2k)
    b"8BPS",  # Photoshop
    b"qoif",
    b"DDS ",
    b"icns",
    b"\x59\xa6\x6a\x95",  # Sun raster
    b"SIMPLE  =",  # FITS
    b"/* XPM */",
    b"DanM",  # MS Paint
    b"LinS",
    b"FTEX",
    b"BLP1",
    b"BLP2",
)
# netpbm: P1-P7 and PF/Pf, then whitespace (P1-P3 are plain text: they must beat text).
_NETPBM = re.compile(rb"\AP[1-7Ff][ \t\r\n]+(?:#[^\n]*\n\s*)*(?:\d|WIDTH)")
_XBM = re.compile(rb"\A\s*(?:/\*.*?\*/\s*)?#define[ \t]+\S*_width[ \t]+\d", re.DOTALL)
# Pillow formats whose test is weak (no signature, or two bytes): trusted only when the file's
# extension is one Pillow registers for them. MPEG is video (Pillow only reads its header).
_WEAK_FORMATS = frozenset({"TGA", "IPTC", "PCD", "SPIDER", "XVTHUMB", "IMT", "MCIDAS", "GBR"})
_NOT_IMAGES = frozenset({"MPEG", "PDF"})


class Image(Modality):
    name = "image"
    decoder = "pipelines.stages.decode_image:decode_image"
    # What the installed Pillow reads (a few need a library: HEIF a plugin, EPS Ghostscript).
    extensions = frozenset(
        (
            *("png", "apng", "jpg", "jpeg", "jpe", "jfif", "gif", "webp", "bmp", "dib"),
            *("tif", "tiff", "tga", "icb", "vda", "vst", "sgi", "rgb", "rgba", "bw"),
            *("ppm", "pgm", "pbm", "pnm", "pfm", "ico", "cur", "psd", "mpo", "qoi", "pcx"),
            *("jp2", "j2k", "jpc", "jpf", "jpx", "j2c", "avif", "avifs", "heic", "heif"),
            *("dcx", "dds", "xbm", "xpm", "icns", "msp", "ras", "im", "fits", "fit"),
            *("blp", "ftc", "ftu", "pxr", "eps"),
        )
    )
    embedding_fields = ("image_detail_level",)
    segmentation_keys = frozenset(("mode", "image_max_side", "tiff_pages"))
    # Set for the pages of a multi-page TIFF embedded one by one (segmentation.tiff_pages=all).
    position_fields = ("page",)
    service_formats = frozenset(("png", "jpeg", "gif", "webp"))

    def sniff(self, head: bytes) -> int:
        if head.startswith(_MAGIC):
            return 2
        if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
            return 2
        if head[4:8] == b"ftyp" and head[8:12] in IMAGE_BRANDS:
            return 2
        if _NETPBM.match(head) or _XBM.match(head):
            return 2
        if head.startswith((b"%!PS-Adobe-3.0 EPSF", b"\xc5\xd0\xd3\xc6")):
            return 2  # EPS (read with Ghostscript)
        # Weak signatures, for content that is not text: BMP (the DIB header size), ICO/CUR
        # (reserved 0, type 1/2, a few images), SGI (magic 474), PCX (maker 10, RLE).
        if head[:2] == b"BM" and int.from_bytes(head[14:18], "little") in _DIB_HEADER_SIZES:
            return 1
        if (
            len(head) > 6
            and head[:4] in (b"\x00\x00\x01\x00", b"\x00\x00\x02\x00")
            and head[4] > 0
            and not head[5]
        ):
            return 1
        if head[:2] == b"\x01\xda" and head[2] in (0, 1) and head[3] in (1, 2):
            return 1
        if len(head) > 3 and head[0] == 10 and head[1] in (0, 2, 3, 4, 5) and head[2] == 1:
            return 1
        return 0

    def identify(self, path: str, head: bytes) -> int | None:
        """2 when the installed Pillow opens the file (its header: no pixel is decoded)."""
        import warnings

        from PIL import Image as PILImage

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with PILImage.open(path) as im:
                    fmt = str(im.format or "")
        except PILImage.DecompressionBombError:
            return 2  # an image, too big: the decoder refuses it with image_too_large
        except Exception:
            return 0
        if fmt in _NOT_IMAGES:
            return 0
        if fmt in _WEAK_FORMATS:
            PILImage.init()
            registered = PILImage.registered_extensions()
            if registered.get("." + extension(path)) != fmt:
                return 0
        return 2

    def request(
        self, row: Mapping[str, Any], emb: EmbeddingConfig, purpose: str | None = None
    ) -> EmbeddingRequest:
        return image_request(row, emb, emb.image_detail_level, purpose)

    def estimate_tokens(self, row: Mapping[str, Any]) -> int:
        return tokens.IMAGE_TOKENS

    def usage(self, row: Mapping[str, Any]) -> Usage:
        return Usage(images=1)

    def service_request(
        self, fmt: str, source_uri: str, emb: EmbeddingConfig, seg: SegmentationConfig
    ) -> EmbeddingRequest:
        from pipelines.bedrock.request import EmbeddingRequest

        request = EmbeddingRequest.for_image(
            None, fmt, emb.image_detail_level, **staged(emb, source_uri)
        )
        return valid(request.segmented())

    def service_fields(self, result: Any, emb: EmbeddingConfig) -> dict[str, Any]:
        return {"detail_level": emb.image_detail_level}

    def fingerprint_fields(self, seg: SegmentationConfig) -> FingerprintFields:
        if seg.tiff_pages != "first":  # the default keeps the fingerprints of existing collections
            return self.embedding_fields, ("mode", "image_max_side", "tiff_pages")
        return self.embedding_fields, ("mode", "image_max_side")

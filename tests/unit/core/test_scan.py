"""Scanning folders and S3 prefixes into manifests; modality sniffing from content."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipelines.config.manifest_schema import ManifestJobConfig
from pipelines.core.manifest import validate_manifest
from pipelines.core.scan import scan_source, sniff_modality

REPO = Path(__file__).resolve().parents[3]

# ---- media generated at test time ------------------------------------------------------------


def _image(fmt: str) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 12), (200, 30, 30)).save(buf, format=fmt)
    return buf.getvalue()


def _pdf() -> bytes:
    import pymupdf

    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), "hello")
    data = doc.tobytes()
    doc.close()
    return bytes(data)


def _wav() -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x01" * 800)
    return buf.getvalue()


def _audio(codec: str, fmt: str, **options: str) -> bytes:
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt, options=options) as container:
        stream = cast("av.AudioStream", container.add_stream(codec, rate=48000))
        stream.layout = "mono"
        size = stream.codec_context.frame_size or 1024
        sample_fmt = stream.codec_context.format.name
        # Encoders want their own sample format: 16/32-bit integers or float.
        scale, dtype = {"s16": (2**15 - 1, "int16"), "s32": (2**31 - 1, "int32")}.get(
            sample_fmt.rstrip("p"), (1, "float32")
        )
        for i in range(5):
            wave_ = np.sin(np.arange(i * size, (i + 1) * size) * 0.05) * 0.3 * scale
            frame = av.AudioFrame.from_ndarray(
                wave_.astype(dtype).reshape(1, -1), format=sample_fmt, layout="mono"
            )
            frame.sample_rate = 48000
            frame.pts = i * size
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buf.getvalue()


def _video(codec: str, fmt: str) -> bytes:
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as container:
        stream = cast("av.VideoStream", container.add_stream(codec, rate=10))
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), i * 60, np.uint8), "rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buf.getvalue()


# name -> (content factory, expected modality)
MEDIA: dict[str, tuple[Callable[[], bytes], str]] = {
    "img.png": (lambda: _image("PNG"), "image"),
    "img.jpg": (lambda: _image("JPEG"), "image"),
    "img.gif": (lambda: _image("GIF"), "image"),
    "img.webp": (lambda: _image("WEBP"), "image"),
    "img.bmp": (lambda: _image("BMP"), "image"),
    "doc.pdf": (_pdf, "document"),
    "voice.wav": (_wav, "audio"),
    "song.mp3": (lambda: _audio("libmp3lame", "mp3"), "audio"),
    "bare.mp3": (lambda: _audio("libmp3lame", "mp3", id3v2_version="0"), "audio"),
    "song.m4a": (lambda: _audio("aac", "ipod"), "audio"),
    "song.flac": (lambda: _audio("flac", "flac"), "audio"),
    "song.ogg": (lambda: _audio("libopus", "ogg"), "audio"),
    "clip.mp4": (lambda: _video("libx264", "mp4"), "video"),
    "clip.mkv": (lambda: _video("libx264", "matroska"), "video"),
    "clip.webm": (lambda: _video("libvpx-vp9", "webm"), "video"),
    "notes.txt": (lambda: "héllo wörld ☃\n".encode() * 10, "text"),
}


@pytest.fixture(scope="module")
def media() -> dict[str, bytes]:
    return {name: factory() for name, (factory, _) in MEDIA.items()}


@pytest.mark.parametrize("name", sorted(MEDIA))
def test_sniff_by_content(media: dict[str, bytes], name: str) -> None:
    assert sniff_modality(media[name][:4096], name) == MEDIA[name][1]


@pytest.mark.parametrize(
    ("name", "misnamed", "expected"),
    [
        ("img.png", "really.txt", "image"),
        ("doc.pdf", "scan.jpg", "document"),
        ("song.mp3", "track.pdf", "audio"),
        ("notes.txt", "notes.png", "text"),
        ("clip.webm", "clip.bin", "video"),
        # Audio-only MPEG-4 is told apart by its ftyp brand (M4A), whatever the extension...
        ("song.m4a", "song.mp4", "audio"),
    ],
)
def test_content_beats_extension(
    media: dict[str, bytes], name: str, misnamed: str, expected: str
) -> None:
    assert sniff_modality(media[name][:4096], misnamed) == expected


def test_ambiguous_container_uses_extension() -> None:
    # ...while an isom-branded file holding only audio is audio only when named like audio.
    data = _audio("aac", "mp4")
    assert data[8:12] == b"isom"
    assert sniff_modality(data[:4096], "voice.m4a") == "audio"
    assert sniff_modality(data[:4096], "voice.mp4") == "video"


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00\x01\x02\x03binary\x00", bytes(range(256)) * 4, b"\x7fELF\x02\x01\x01\x00" * 8],
)
def test_unknown_content(data: bytes) -> None:
    assert sniff_modality(data, "x.dat") is None


def test_text_cut_inside_a_multibyte_character_is_still_text() -> None:
    data = ("a" * 4095 + "é").encode()[:4096]
    assert sniff_modality(data, "x") == "text"
    assert sniff_modality(b"BMW makes cars.\n", "cars") == "text"


# ---- local folders ---------------------------------------------------------------------------


@pytest.fixture
def corpus(tmp_path: Path, media: dict[str, bytes]) -> Path:
    root = tmp_path / "corpus"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / ".cache").mkdir()
    (root / "img.png").write_bytes(media["img.png"])
    (root / "sub" / "doc.pdf").write_bytes(media["doc.pdf"])
    (root / "sub" / "misnamed.txt").write_bytes(media["img.jpg"])
    (root / "sub" / "deeper" / "clip.mp4").write_bytes(media["clip.mp4"])
    (root / "notes.txt").write_bytes(media["notes.txt"])
    (root / "junk.bin").write_bytes(b"\x00\x01\x02\x03" * 64)
    (root / "empty.txt").write_bytes(b"")
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / ".cache" / "x.txt").write_text("hidden")
    return root


def test_scan_local_folder(corpus: Path) -> None:
    result = scan_source(str(corpus))
    rows = {r["asset_id"]: r for r in result.table.to_pylist()}
    assert {k: v["modality"] for k, v in rows.items()} == {
        "img.png": "image",
        "notes.txt": "text",
        "sub/doc.pdf": "document",
        "sub/misnamed.txt": "image",
        "sub/deeper/clip.mp4": "video",
    }
    assert rows["img.png"]["uri"] == str(corpus / "img.png")
    assert rows["img.png"]["size"] == (corpus / "img.png").stat().st_size
    assert rows["img.png"]["content_version"].startswith("sha256:")
    assert rows["img.png"]["mtime"].tzinfo is not None
    assert sorted(result.skipped_unknown) == ["empty.txt", "junk.bin"]
    assert result.skipped_hidden == 2  # .DS_Store and the .cache folder
    assert result.extension_mismatches == ["sub/misnamed.txt"]
    summary = result.summary()
    assert "skipped 2 files with unknown type" in summary and "junk.bin" in summary
    # The scan's manifest is a valid manifest; size and mtime travel as payload.
    out = validate_manifest(result.table)
    assert '"size"' in out.column("payload")[0].as_py()


def test_scan_options(corpus: Path) -> None:
    top = scan_source(f"file://{corpus}", recursive=False)
    assert sorted(top.table.column("asset_id").to_pylist()) == ["img.png", "notes.txt"]
    hidden = scan_source(str(corpus), include_hidden=True)
    assert ".cache/x.txt" in hidden.table.column("asset_id").to_pylist()
    by_stat = scan_source(str(corpus), hash_max_bytes=0)
    versions = by_stat.table.column("content_version").to_pylist()
    assert all(v.startswith("stat:") for v in versions)


def test_content_version_follows_content(corpus: Path) -> None:
    before = scan_source(str(corpus)).table.to_pylist()
    (corpus / "notes.txt").write_text("changed")
    after = scan_source(str(corpus)).table.to_pylist()
    changed = {
        a["asset_id"]
        for a, b in zip(before, after, strict=True)
        if a["content_version"] != b["content_version"]
    }
    assert changed == {"notes.txt"}


def test_scan_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        scan_source(str(tmp_path / "nope"))


def test_job_run_writes_manifest(corpus: Path, tmp_path: Path, capsys: Any) -> None:
    from jobs.manifest import run

    out = tmp_path / "out" / "manifest.parquet"
    run(ManifestJobConfig(source=str(corpus), out=str(out)))
    assert pq.read_table(out).num_rows == 5
    printed = capsys.readouterr().out
    assert "5 assets" in printed and "skipped 2 files with unknown type" in printed


def test_job_cli(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.parquet"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "jobs.manifest",
            f"source={corpus}",
            f"out={out}",
            "recursive=false",
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "2 assets" in proc.stdout
    assert pq.read_table(out).num_rows == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus", "m.parquet"]


# ---- S3 --------------------------------------------------------------------------------------


# ``s3_endpoint``: the session's local S3 (tests/conftest.py).


def test_scan_s3_prefix(s3_endpoint: str, media: dict[str, bytes], tmp_path: Path) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="corpus")
    objects = {
        "data/img.png": media["img.png"],
        "data/sub/song.mp3": media["song.mp3"],
        "data/sub/renamed.dat": media["doc.pdf"],
        "data/.hidden/x.txt": b"hidden",
        "data/junk.bin": b"\x00" * 10,
        "data-other/notes.txt": media["notes.txt"],  # outside the data/ folder
    }
    for key, body in objects.items():
        s3.put_object(Bucket="corpus", Key=key, Body=body)
    result = scan_source("s3://corpus/data", s3_endpoint_url=s3_endpoint)
    rows = {r["asset_id"]: r for r in result.table.to_pylist()}
    assert {k: v["modality"] for k, v in rows.items()} == {
        "data/img.png": "image",
        "data/sub/song.mp3": "audio",
        "data/sub/renamed.dat": "document",
    }
    etag = s3.head_object(Bucket="corpus", Key="data/img.png")["ETag"].strip('"')
    assert rows["data/img.png"]["content_version"] == f"etag:{etag}"
    assert rows["data/img.png"]["uri"] == "s3://corpus/data/img.png"
    assert result.skipped_unknown == ["data/junk.bin"]
    assert result.skipped_hidden == 1
    top = scan_source("s3://corpus/data/", s3_endpoint_url=s3_endpoint, recursive=False)
    assert top.table.column("asset_id").to_pylist() == ["data/img.png"]

    # The job writes the manifest back to S3, where read_manifest finds it.
    from jobs.manifest import run
    from pipelines.core.manifest import load_manifest

    run(
        ManifestJobConfig(
            source="s3://corpus/data",
            out="s3://corpus/manifests/m.parquet",
            s3_endpoint_url=s3_endpoint,
        )
    )
    loaded = load_manifest("s3://corpus/manifests/m.parquet", s3_endpoint_url=s3_endpoint)
    assert loaded.num_rows == 3


# ---- local files: a deeper look when the first bytes leave the modality open -----------------


def test_local_scan_looks_inside_containers_and_text(tmp_path: Path) -> None:
    import zipfile

    from PIL import Image

    root = tmp_path / "c"
    root.mkdir()
    # An audio-only isom MP4 named .mp4: the streams say audio (the first bytes alone: video).
    song = _audio("aac", "mp4")
    (root / "song.mp4").write_bytes(song)
    assert sniff_modality(song[:4096], "song.mp4") == "video"
    # An ASCII PPM: text to a naive sniff, an image to Pillow.
    buf = io.BytesIO()
    Image.new("RGB", (4, 3), (10, 20, 30)).save(buf, format="PPM")  # binary P6 ...
    plain = b"P3\n4 3\n255\n" + b"10 20 30\n" * 12  # ... and its plain (ASCII) form
    (root / "plain.ppm").write_bytes(plain)
    (root / "picture.txt").write_bytes(plain)  # content wins over the name
    # A TGA has no signature: Pillow opens it, and its extension is Pillow's.
    Image.new("RGB", (5, 5), (200, 10, 10)).save(root / "x.tga", format="TGA")
    # ZIPs: an office-like archive is skipped, a comic book archive is a document.
    with zipfile.ZipFile(root / "report.docx", "w") as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        zf.writestr("word/document.xml", "<w:document/>")
    with zipfile.ZipFile(root / "comic.cbz", "w") as zf:
        zf.writestr("p1.png", _image("PNG"))
    # Text named like media stays text.
    (root / "notes.mp4").write_text("not a video at all\n" * 20)
    result = scan_source(str(root))
    got = {r["asset_id"]: r["modality"] for r in result.table.to_pylist()}
    assert got == {
        "song.mp4": "audio",
        "plain.ppm": "image",
        "picture.txt": "image",
        "x.tga": "image",
        "comic.cbz": "document",
        "notes.mp4": "text",
    }
    assert result.skipped_unknown == ["report.docx"]
    assert sorted(result.extension_mismatches) == ["notes.mp4", "picture.txt", "song.mp4"]

"""Conformance corpus: real-world files through the real scanner and the real decoders.

The expected outcome of every file is the "Conformance corpus" table of ``docs/formats.md``
(the scanner's modality, ``embedded`` or the dead-letter code, the number of segments): this test
reads it from there, so the documentation and the behaviour cannot drift apart. No file may end
``decode_internal``. Where the files come from: ``SOURCES.md``.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pipelines.config.compose import compose_backfill
from pipelines.config.schema import BackfillJobConfig
from pipelines.core.scan import ScanResult, scan_source, sniff_modality
from pipelines.stages.decode import decode_asset

HERE = Path(__file__).parent
FILES = HERE / "files"
DOC = HERE.parents[1] / "docs" / "formats.md"


def _table(section: str) -> list[list[str]]:
    """The rows (cells) of the first Markdown table after the heading ``section``."""
    text = DOC.read_text(encoding="utf-8")
    start = text.index(f"## {section}\n")
    rows: list[list[str]] = []
    for line in text[start:].splitlines()[1:]:
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif rows:
            break
    return rows[2:]  # header and rule


def _expected() -> dict[str, tuple[str, str, int | None]]:
    """file -> (modality or "-", outcome, segments or None), from docs/formats.md."""
    out = {}
    for cells in _table("Conformance corpus"):
        name, modality, outcome, segments = (c.strip("`") for c in cells[:4])
        out[name] = (modality, outcome, int(segments) if segments.isdigit() else None)
    return out


EXPECTED = _expected()


@pytest.fixture(scope="module")
def cfg() -> BackfillJobConfig:
    return compose_backfill(["usecase=mixed_media", "manifest=unused.parquet"])


@pytest.fixture(scope="module")
def scanned() -> ScanResult:
    return scan_source(str(FILES))


@pytest.fixture(scope="module")
def rows_by_file(scanned: ScanResult) -> dict[str, dict[str, Any]]:
    return {r["asset_id"]: r for r in scanned.table.to_pylist()}


def _decode(row: dict[str, Any], cfg: BackfillJobConfig, **kw: Any) -> list[dict[str, Any]]:
    asset = {"metadata": None, "label": None, "payload": None, "text": None}
    asset |= {"content_version": None, **row}
    return list(decode_asset(asset, cfg.segmentation, cfg.embedding, **kw))


def test_every_file_is_in_the_table_and_in_the_sources() -> None:
    on_disk = {p.relative_to(FILES).as_posix() for p in FILES.rglob("*") if p.is_file()}
    assert on_disk == set(EXPECTED)
    sources = (HERE / "SOURCES.md").read_text(encoding="utf-8")
    assert [n for n in sorted(on_disk) if f"`{n.split('/')[-1]}`" not in sources] == []
    # Kept small for CI: a few MiB.
    assert sum((FILES / n).stat().st_size for n in on_disk) < 4 * 1024 * 1024


def test_the_scanner_keeps_or_skips_each_file_as_the_table_says(
    scanned: ScanResult, rows_by_file: dict[str, dict[str, Any]]
) -> None:
    got = {name: row["modality"] for name, row in rows_by_file.items()}
    got.update({name: "-" for name in scanned.skipped_unknown})
    assert got == {name: exp[0] for name, exp in EXPECTED.items()}


@pytest.mark.parametrize("name", sorted(n for n, e in EXPECTED.items() if e[0] != "-"))
def test_each_file_ends_as_the_table_says(
    name: str, rows_by_file: dict[str, dict[str, Any]], cfg: BackfillJobConfig
) -> None:
    _, outcome, segments = EXPECTED[name]
    rows = _decode(rows_by_file[name], cfg, accepts=cfg.usecase.modalities)
    codes = [r["error_code"] for r in rows if r.get("error_code")]
    assert "decode_internal" not in codes, [r.get("error_message") for r in rows]
    if outcome == "embedded":
        assert codes == []
        assert len(rows) == segments
        assert all(r["input_bytes"] or r["input_text"] for r in rows)
        formats = {r["input_format"] for r in rows if r["input_kind"] in ("image", "audio")}
        assert formats <= {"png", "jpeg", "gif", "webp", cfg.segmentation.audio_format}
    else:
        assert codes == [outcome]


def test_the_numbers_in_the_doc_add_up() -> None:
    counted: dict[str, Counter[str]] = {}
    for modality, outcome, _ in EXPECTED.values():
        counted.setdefault("unknown" if modality == "-" else modality, Counter())[outcome] += 1
    text = DOC.read_text(encoding="utf-8")
    numbers = text[text.index("In numbers:") :]
    for modality, c in counted.items():
        line = next(x for x in numbers.splitlines() if x.startswith(f"| {modality} |"))
        cells = [x.strip() for x in line.strip("|").split("|")]
        assert int(cells[1]) == sum(c.values()), modality
        assert int(cells[2]) == c["embedded"], modality
        dead = dict(re.findall(r"`(\w+)` (\d+)", cells[3]))
        assert {k: int(v) for k, v in dead.items()} == {
            k: v for k, v in c.items() if k not in ("embedded", "skipped")
        }, modality
        assert int(cells[4]) == c["skipped"], modality


# ---- the cases, one by one -----------------------------------------------------------


def test_plain_text_image_formats_are_images_not_text(rows_by_file: dict[str, Any]) -> None:
    for name in ("pillow/hopper_8bit_plain.ppm", "pillow/hopper.xpm", "pillow/hopper.xbm"):
        assert rows_by_file[name]["modality"] == "image", name
    # ... from the first bytes alone too (S3 scans): an ASCII PPM is never text.
    head = (FILES / "pillow/hopper_8bit_plain.ppm").read_bytes()[:4096]
    assert head.startswith(b"P3") and sniff_modality(head, "x.ppm") == "image"


@pytest.mark.parametrize(
    "name",
    ["pymediainfo/mp4-with-audio.mp4", "generated/audio_only.webm", "pymediainfo/issue55.flv"],
)
def test_a_video_row_for_an_audio_only_file_is_embedded_as_audio(
    name: str, cfg: BackfillJobConfig
) -> None:
    from pipelines.modalities import get

    row = {"asset_id": name, "uri": str(FILES / name), "modality": "video"}
    rows = _decode(row, cfg, accepts=cfg.usecase.modalities)
    assert [r["error_code"] for r in rows] == [None] * len(rows) and rows
    assert {r["input_kind"] for r in rows} == {"audio"}
    video = get("video")
    request = video.request(rows[0], cfg.embedding)
    assert request.to_body()["singleEmbeddingParams"].keys() >= {"audio"}
    usage = video.usage(rows[0])
    assert usage.notes == {"audio_only_video": 1} and usage.media_seconds == 0
    assert video.cost(usage, cfg.prices) == pytest.approx(
        usage.audio_seconds * cfg.prices.audio_per_second
    )
    # A use case that takes no audio refuses it with a code of its own, never no_video_stream.
    refused = _decode(row, cfg, accepts=["video"])
    assert [(r["error_code"], r["segment_index"]) for r in refused] == [("audio_only_video", -1)]


def test_the_same_files_scanned_from_their_first_bytes_follow_the_extension() -> None:
    # The cheap path (S3 scans): a container that may hold audio or video goes by its name.
    head = (FILES / "pymediainfo/mp4-with-audio.mp4").read_bytes()[:4096]
    assert sniff_modality(head, "a.mp4") == "video"
    assert sniff_modality(head, "a.m4a") == "audio"


def test_tags_that_are_not_utf8_do_not_fail(cfg: BackfillJobConfig, caplog: Any) -> None:
    import av

    path = FILES / "generated/latin1_tags.mp4"
    assert b"Caf\xe9" in path.read_bytes()
    with pytest.raises(UnicodeDecodeError):
        av.open(str(path)).close()  # what the decoder did before: decode_internal
    with caplog.at_level(logging.ERROR):
        rows = _decode({"asset_id": "x", "uri": str(path), "modality": "video"}, cfg)
    assert [r["error_code"] for r in rows] == [None]

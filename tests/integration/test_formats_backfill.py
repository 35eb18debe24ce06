"""A few files of the conformance corpus (``tests/conformance/files``) backfilled end to end: the
scanner's manifest, Ray, the local endpoint and Qdrant; plus a manifest row that says ``video``
for a file that holds only audio."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nova_devkit.emulator.launch import Endpoints
from pipelines.backfill import run_backfill
from pipelines.config.compose import compose_backfill
from pipelines.core.scan import scan_source

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_session")]

FILES = Path(__file__).parents[1] / "conformance" / "files"
PICKED = {
    "pillow/hopper_8bit_plain.ppm": "image",  # ASCII PPM: an image, not 31 text chunks
    "pillow/la.tga": "image",
    "pillow/broken.png": "image",
    "generated/sample.xps": "document",
    "generated/page.html": "text",
    "generated/latin1_tags.mp4": "video",
    "pymediainfo/mp4-with-audio.mp4": "audio",
}


def _backfill(usecase: str, manifest: Path, tmp_path: Path, emulator: Endpoints) -> tuple:
    cfg = compose_backfill(
        [
            f"usecase={usecase}",
            f"manifest={manifest}",
            *emulator.pipeline_overrides(),
            f"qdrant.path={tmp_path / 'qdrant'}",
            f"run_dir={tmp_path / 'runs'}",
            f"state.path={tmp_path / 'state'}",
            # The scanned copy sits beside the manifest; the audio-only WebM is read in place.
            f"inputs.allowed_roots=[{manifest.parent},{FILES}]",
        ]
    )
    result = run_backfill(cfg)
    dead = pq.read_table(result.dead_letter_path).to_pylist()
    return result.report, {d["asset_id"]: d["error_code"] for d in dead}


def test_scanned_corpus_and_an_audio_only_video_row(emulator: Endpoints, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    for name in PICKED:
        (corpus / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(FILES / name, corpus / name)
    scanned = scan_source(str(corpus))
    assert (
        dict(zip(*scanned.table.select(["asset_id", "modality"]).to_pydict().values(), strict=True))
        == PICKED
    )
    # The user's manifest says "video" for an audio-only WebM.
    webm = FILES / "generated/audio_only.webm"
    extra = pa.Table.from_pylist(
        [{"asset_id": "song-as-video", "uri": str(webm), "modality": "video"}],
    )
    table = pa.concat_tables(
        [
            scanned.table.select(["asset_id", "uri", "modality"]),
            extra.cast(scanned.table.select(["asset_id", "uri", "modality"]).schema),
        ]
    )
    manifest = tmp_path / "manifest.parquet"
    pq.write_table(table, manifest)

    rep, dead = _backfill("mixed_media", manifest, tmp_path, emulator)
    assert dead == {"pillow/broken.png": "image_corrupt"}
    assert rep["embedded"] == len(PICKED) and rep["dead_lettered"] == 1
    video = rep["by_modality"]["video"]
    assert video["embedded"] == 2 and video["notes"] == {"audio_only_video": 1}
    assert rep["by_modality"]["text"]["segments"] == 1  # the page's visible text, one chunk
    sent = [r.body for r in emulator.emulator.requests if r.operation == "InvokeModel"]
    kinds = [next(iter(set(b["singleEmbeddingParams"]) & {"text", "image", "audio", "video"}))
             for b in sent]  # fmt: skip
    assert sorted(kinds).count("audio") == 2  # the M4A-like MP4 and the WebM sent as audio
    texts = [b["singleEmbeddingParams"]["text"]["value"] for b in sent if "text" in
             b["singleEmbeddingParams"]]  # fmt: skip
    assert texts and all("<" not in t and "hidden" not in t for t in texts)
    json.dumps(rep)

    # A use case without audio refuses the audio-only video row with its own code.
    only = tmp_path / "only.parquet"
    pq.write_table(table.filter(pa.compute.equal(table["modality"], "video")), only)
    rep, dead = _backfill("video_clip_search", only, tmp_path / "clips", emulator)
    assert dead == {"song-as-video": "audio_only_video"}
    assert rep["embedded"] == 1

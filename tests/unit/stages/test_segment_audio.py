"""segment_audio: windows, formats, laziness and every dead-letter code, on generated media."""

from __future__ import annotations

import io
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nova_devkit.media.av import (
    make_not_media,
    make_tone_audio,
    make_truncated_copy,
    make_video,
    music_like,
    speech_like,
)
from pipelines.config.schema import EmbeddingConfig, SegmentationConfig
from pipelines.config.validate import validate_segmentation
from pipelines.core.errors import ConfigError
from pipelines.core.rows import SEGMENT_COLUMNS, is_dead_letter
from pipelines.stages._decode_common import decoded_rows
from pipelines.stages.segment_audio import (
    API_MAX_SECONDS,
    MIN_TAIL_S,
    plan_windows,
    segment_audio,
)

EMB = EmbeddingConfig()


def run(path: Path | str, **seg: Any) -> list[dict[str, Any]]:
    asset = {"asset_id": "a1", "uri": str(path), "modality": "audio"}
    return list(decoded_rows(asset, segment_audio(asset, SegmentationConfig(**seg), EMB)))


def decoded(data: bytes) -> tuple[str, float]:
    """(demuxer name, decoded seconds) of an encoded segment."""
    import av

    with av.open(io.BytesIO(data), "r") as c:
        samples, rate = 0, 1
        for frame in c.decode(audio=0):
            samples += frame.samples
            rate = frame.sample_rate
        return str(c.format.name), samples / rate


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("audio")
    make_tone_audio(d / "speech.wav", 10.3, kind="speech", seed=1)
    for ext in ("wav", "mp3", "ogg", "flac", "m4a"):
        make_tone_audio(d / f"music.{ext}", 7.0, kind="music", seed=2)
    make_tone_audio(d / "long.wav", 65.0, kind="tone")
    return d


# --- planning --------------------------------------------------------------------------------


def test_plan_windows_covers_with_overlap() -> None:
    assert plan_windows(10.0, 4.0, 3.0) == [(0.0, 4.0), (3.0, 7.0), (6.0, 10.0)]
    assert plan_windows(3.0, 4.0, 4.0) == [(0.0, 3.0)]
    assert plan_windows(0.0, 4.0, 4.0) == []


def test_plan_windows_short_tail_merged_or_dropped() -> None:
    # 8.3 s in 4 s windows: the 0.3 s tail merges into the previous window (4.3 s <= cap).
    assert plan_windows(8.3, 4.0, 4.0, max_s=29.95) == [(0.0, 4.0), (4.0, 8.3)]
    # At the cap, merging would exceed it: the tail is dropped (< 0.5 s lost).
    assert plan_windows(60.2, 29.95, 29.95) == [(0.0, 29.95), (29.95, 59.9)]
    # A tail of 0.5 s or more is its own window.
    assert plan_windows(8.6, 4.0, 4.0)[-1] == (8.0, 8.6)


# --- windows and formats ---------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["mp3", "wav", "ogg"])
def test_windows_bounds_and_encoded_format(media: Path, fmt: str) -> None:
    rows = run(media / "speech.wav", audio_window_s=4.0, audio_overlap_s=1.0, audio_format=fmt)
    assert [r["segment_index"] for r in rows] == [0, 1, 2]
    assert [r["end_s"] for r in rows[:2]] == pytest.approx([4.0, 7.0])
    assert all(set(r) == set(SEGMENT_COLUMNS) for r in rows)
    assert {r["segment_count"] for r in rows} == {3}
    assert [r["start_s"] for r in rows] == pytest.approx([0.0, 3.0, 6.0])
    assert rows[-1]["end_s"] == pytest.approx(10.3, abs=0.05)
    for r in rows:
        assert not is_dead_letter(r)
        assert (r["input_kind"], r["input_format"]) == ("audio", fmt)
        # A last window may absorb a tail shorter than MIN_TAIL_S (10.3 s: the last is 6-10.3).
        assert r["end_s"] - r["start_s"] <= 4.0 + MIN_TAIL_S
        demuxer, seconds = decoded(r["input_bytes"])
        assert fmt in demuxer.split(",")
        assert seconds == pytest.approx(r["end_s"] - r["start_s"], abs=0.5)


@pytest.mark.parametrize("ext", ["wav", "mp3", "ogg", "flac", "m4a"])
def test_any_decodable_source_format(media: Path, ext: str) -> None:
    rows = run(media / f"music.{ext}", audio_window_s=3.0, audio_format="wav")
    assert len(rows) == 3 and not any(is_dead_letter(r) for r in rows)
    assert rows[0]["start_s"] == 0.0
    assert rows[-1]["end_s"] == pytest.approx(7.0, abs=0.1)
    total = sum(decoded(r["input_bytes"])[1] for r in rows)
    assert total == pytest.approx(7.0, abs=0.2)


def test_window_is_clamped_below_the_api_limit(media: Path) -> None:
    rows = run(media / "long.wav", audio_window_s=45.0, audio_format="ogg")
    assert len(rows) == 3
    for r in rows:
        assert r["end_s"] - r["start_s"] <= API_MAX_SECONDS
        assert decoded(r["input_bytes"])[1] <= API_MAX_SECONDS
    assert rows[-1]["end_s"] == pytest.approx(65.0, abs=0.05)


def test_rows_are_lazy_and_memory_is_bounded_by_a_window(tmp_path: Path) -> None:
    path = make_tone_audio(tmp_path / "five_minutes.wav", 300.0, kind="tone")
    it = segment_audio({"asset_id": "a", "uri": path}, SegmentationConfig(audio_window_s=5.0,
                       audio_format="wav"), EMB)  # fmt: skip
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        baseline = tracemalloc.get_traced_memory()[0]
        first = next(iter(it))
        rows = [first]
        for row in it:
            row["input_bytes"] = None  # a consumer that moves on: keep only the row skeletons
            rows.append(row)
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        if not was_tracing:
            tracemalloc.stop()
    assert first["segment_index"] == 0 and len(rows) == 60
    # The whole asset decoded at 24 kHz s16 would be 14.4 MB; one window is 240 kB.
    assert peak < 3_000_000


# --- errors ----------------------------------------------------------------------------------


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "e.mp3").write_bytes(b"")
    [row] = run(tmp_path / "e.mp3")
    assert (row["error_stage"], row["error_code"], row["segment_index"]) == (
        "decode",
        "empty_file",
        -1,
    )


def test_missing_file(tmp_path: Path) -> None:
    [row] = run(tmp_path / "nope.wav")
    assert row["error_code"] == "file_not_found"


def test_not_media(tmp_path: Path) -> None:
    [row] = run(make_not_media(tmp_path / "x.mp3"))
    assert row["error_code"] == "media_corrupt" and row["input_bytes"] is None


def test_no_audio_stream(tmp_path: Path) -> None:
    [row] = run(make_video(tmp_path / "silent.mp4", 1.0, with_audio=False))
    assert row["error_code"] == "no_audio_stream"


def test_truncated_container_index_is_corrupt(media: Path, tmp_path: Path) -> None:
    # An m4a cut short loses its moov atom: it cannot even be opened.
    [row] = run(make_truncated_copy(media / "music.m4a", tmp_path / "t.m4a", 0.5))
    assert row["error_code"] == "media_corrupt"


def test_truncated_with_length_header_embeds_the_rest_and_accounts_for_it(
    media: Path, tmp_path: Path
) -> None:
    # The mp3 Xing tag says 7 s; the file holds about 3.5 s.
    rows = run(make_truncated_copy(media / "music.mp3", tmp_path / "t.mp3", 0.5),
               audio_window_s=2.0)  # fmt: skip
    good, last = rows[:-1], rows[-1]
    assert good and not any(is_dead_letter(r) for r in good)
    assert last["error_code"] == "media_truncated"
    assert last["segment_index"] == len(good) and {r["segment_count"] for r in rows} == {len(rows)}
    assert last["end_s"] == pytest.approx(7.0, abs=0.1)


def test_failure_mid_stream_dead_letters_the_failing_window(media: Path, tmp_path: Path) -> None:
    # FLAC decoding fails on the cut packet after the first windows were produced.
    rows = run(make_truncated_copy(media / "music.flac", tmp_path / "t.flac", 0.6),
               audio_window_s=1.0)  # fmt: skip
    assert not any(is_dead_letter(r) for r in rows[:-1]) and len(rows) > 1
    assert rows[-1]["error_code"] == "media_corrupt"
    assert rows[-1]["segment_index"] == len(rows) - 1
    assert rows[-1]["start_s"] == pytest.approx(len(rows) - 1.0)


def test_configuration_errors_fail_before_any_work() -> None:
    # One place checks configuration, before any work; the decoder trusts it.
    with pytest.raises(ConfigError, match="audio_format"):
        validate_segmentation(SegmentationConfig(audio_format="flac"))
    with pytest.raises(ConfigError, match="audio_overlap_s"):
        validate_segmentation(SegmentationConfig(audio_window_s=4, audio_overlap_s=3))


# --- generators ------------------------------------------------------------------------------


def test_generators_are_deterministic_and_distinct() -> None:
    a, b = speech_like(2.0, seed=3), speech_like(2.0, seed=3)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, speech_like(2.0, seed=4))
    m = music_like(2.0, seed=3)
    assert a.shape == m.shape == (32000,)
    # Speech has pauses (many near-silent 50 ms blocks); music sustains.
    quiet = lambda x: np.mean(np.abs(x.reshape(-1, 800)).max(axis=1) < 0.02)  # noqa: E731
    assert quiet(speech_like(6.0, seed=5)) > quiet(music_like(6.0, seed=5))


def _pcm(data: bytes) -> Any:
    import av
    import numpy as np

    with av.open(io.BytesIO(data), "r") as c:
        return np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)]).astype(
            np.float64
        )


@pytest.mark.parametrize("ext", ["mp3", "wav"])
def test_parts_of_a_split_audio_asset_decode_their_own_windows_like_a_whole_decode(
    tmp_path: Path, ext: str
) -> None:
    """Each part plans every window (same segment_count, global indices) and decodes only its
    own, seeking near the first: the windows match a whole decode's within a few ms."""
    import numpy as np

    path = make_tone_audio(tmp_path / f"parts.{ext}", 95.0, kind="music", seed=4)
    seg = SegmentationConfig(audio_window_s=10, audio_format="wav")

    def rows(part: str | None) -> list[dict[str, Any]]:
        asset = {"asset_id": "a1", "uri": str(path), "modality": "audio", "part": part}
        return list(decoded_rows(asset, segment_audio(asset, seg, EMB)))

    whole = rows(None)
    parts = [rows(f"{k}/3") for k in range(3)]
    split = [r for p in parts for r in p]
    assert all(p for p in parts)  # every part has windows of its own
    assert not any(is_dead_letter(r) for r in whole + split)
    assert [r["segment_index"] for r in split] == [r["segment_index"] for r in whole]
    assert {r["segment_count"] for r in split} == {len(whole)} == {10}
    for a, b in zip(whole, split, strict=True):
        assert a["start_s"] == b["start_s"] and abs(a["end_s"] - b["end_s"]) < 1e-6
        x, y = _pcm(a["input_bytes"]), _pcm(b["input_bytes"])
        assert abs(len(x) - len(y)) <= 1
        # The same audio up to a sub-sample shift (the resampler starts at another phase after
        # a seek): equal energy and magnitude spectra, which a shift does not change.
        n = min(len(x), len(y))
        fx, fy = np.abs(np.fft.rfft(x[:n])), np.abs(np.fft.rfft(y[:n]))
        similarity = float(np.dot(fx, fy) / (np.linalg.norm(fx) * np.linalg.norm(fy)))
        assert similarity > 0.99, (a["segment_index"], similarity)
        assert abs(np.linalg.norm(x[:n]) / np.linalg.norm(y[:n]) - 1) < 0.02
        # And placed where the whole decode placed it: aligned within a few samples.
        mid = slice(n // 2, n // 2 + 12000)
        best = max(
            float(np.dot(x[mid], np.roll(y, lag)[mid]))
            / (np.linalg.norm(x[mid]) * np.linalg.norm(np.roll(y, lag)[mid]))
            for lag in range(-3, 4)
        )
        assert best > 0.9, (a["segment_index"], best)


def test_a_part_past_the_last_window_yields_nothing(media: Path) -> None:
    """A 10.3 s file holds one 30 s window: split in three, only the first part has it."""
    seg = SegmentationConfig()
    got = []
    for k in range(3):
        asset = {"asset_id": "a1", "uri": str(media / "speech.wav"), "modality": "audio"}
        asset["part"] = f"{k}/3"
        got.append(list(decoded_rows(asset, segment_audio(asset, seg, EMB))))
    assert [len(g) for g in got] == [1, 0, 0]
    assert got[0][0]["segment_index"] == 0 and not is_dead_letter(got[0][0])

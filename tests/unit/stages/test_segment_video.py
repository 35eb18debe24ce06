"""segment_video on real files: the path taken, segment bounds and contents, dead letters."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from nova_devkit.media.av import (
    make_not_media,
    make_tone_audio,
    make_truncated_copy,
    make_video,
)
from pipelines.config.schema import SegmentationConfig
from pipelines.config.validate import validate_segmentation
from pipelines.core.errors import ConfigError
from pipelines.core.rows import SEGMENT_COLUMNS, is_dead_letter
from pipelines.stages.segment_video import segment_video
from pipelines.stages.video.plan import plan_video
from tests.unit.stages.video.helpers import EMB, inspect, run


def keyframe_packets(path: Path | str) -> dict[float, bytes]:
    import av

    with av.open(str(path)) as c:
        return {
            round(float(p.pts * p.time_base), 3): bytes(p)
            for p in c.demux(video=0)
            if p.is_keyframe and p.pts is not None
        }


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("video")
    make_video(d / "dense.mp4", 12.5, fps=10, size=(96, 64), gop=10, seed=1)
    make_video(d / "sparse.mp4", 12.5, fps=10, size=(96, 64), gop=200, seed=2)
    make_video(d / "silent.mp4", 9.0, fps=10, size=(96, 64), gop=10, with_audio=False, seed=3)
    make_video(d / "bframes.mkv", 9.0, fps=10, size=(96, 64), gop=10, bframes=2, preset="fast")
    make_video(d / "clip.webm", 5.0, fps=10, size=(96, 64), gop=10, seed=4)
    return d


# --- real files -----------------------------------------------------------------------------


def check_rows(rows: list[dict[str, Any]], duration: float, window: float) -> None:
    assert all(set(r) == set(SEGMENT_COLUMNS) for r in rows)
    assert not any(is_dead_letter(r) for r in rows), [r["error_message"] for r in rows]
    assert [r["segment_index"] for r in rows] == list(range(len(rows)))
    assert {r["segment_count"] for r in rows} == {len(rows)}
    assert rows[0]["start_s"] == 0.0
    assert rows[-1]["end_s"] == pytest.approx(duration, abs=0.1)
    for r in rows:
        assert (r["input_kind"], r["input_format"]) == ("video", "mp4")
        assert r["end_s"] - r["start_s"] <= min(window, 30.0) + 1e-6


def test_dense_file_is_copied_packet_for_packet(media: Path) -> None:
    rows, [plan] = run(media / "dense.mp4", video_window_s=4.0)
    assert plan.method == "copy"
    check_rows(rows, 12.5, 4.0)
    # Keyframes every second: cuts land exactly on the 4 s grid (12.5 s: a 0.5 s tail is kept).
    assert [r["start_s"] for r in rows] == pytest.approx([0.0, 4.0, 8.0, 12.0])
    source_keyframes = keyframe_packets(media / "dense.mp4")
    for r in rows:
        info = inspect(r["input_bytes"])
        assert "mp4" in info["demuxer"] and info["height"] == 64
        assert info["span"] == pytest.approx(r["end_s"] - r["start_s"], abs=0.5)
        assert info["audio_s"] == pytest.approx(r["end_s"] - r["start_s"], abs=0.5)
        # Stream copy: the segment's first packet is the source keyframe, byte for byte.
        assert info["first_packet"] == source_keyframes[round(r["start_s"], 3)]


def test_sparse_file_is_re_encoded_and_scaled(media: Path) -> None:
    rows, [plan] = run(media / "sparse.mp4", video_window_s=4.0, video_max_height=32)
    assert plan.method == "reencode"
    check_rows(rows, 12.5, 4.0)
    assert [r["start_s"] for r in rows] == pytest.approx([0.0, 4.0, 8.0, 12.0])
    for r in rows:
        info = inspect(r["input_bytes"])
        assert info["height"] == 32 and info["first"] == pytest.approx(0.0, abs=0.05)
        assert info["span"] == pytest.approx(r["end_s"] - r["start_s"], abs=0.5)
        assert info["audio_s"] == pytest.approx(r["end_s"] - r["start_s"], abs=0.5)


def test_re_encode_with_overlap(media: Path) -> None:
    rows, [plan] = run(media / "sparse.mp4", video_window_s=5.0, video_overlap_s=1.0)
    assert plan.method == "reencode"
    bounds = [x for r in rows for x in (r["start_s"], r["end_s"])]
    assert bounds == pytest.approx([0.0, 5.0, 4.0, 9.0, 8.0, 12.5])
    spans = [inspect(r["input_bytes"])["span"] for r in rows]
    assert spans == pytest.approx([5.0, 5.0, 4.5], abs=0.5)


@pytest.mark.parametrize("mode", ["auto", "always"])
def test_video_without_audio(media: Path, mode: str) -> None:
    rows, [plan] = run(media / "silent.mp4", video_window_s=4.0, video_reencode=mode)
    assert plan.method == ("copy" if mode == "auto" else "reencode")
    check_rows(rows, 9.0, 4.0)
    for r in rows:
        info = inspect(r["input_bytes"])
        assert info["audio_s"] is None
        assert info["span"] == pytest.approx(r["end_s"] - r["start_s"], abs=0.5)


def test_b_frames_in_matroska_copy_into_mp4(media: Path) -> None:
    rows, [plan] = run(media / "bframes.mkv", video_window_s=4.0)
    assert plan.method == "copy"
    assert len(rows) == 3 and not any(is_dead_letter(r) for r in rows)
    for r in rows:
        info = inspect(r["input_bytes"])
        assert info["frames"] == round((r["end_s"] - r["start_s"]) * 10)


def test_webm_vp9_is_re_encoded_to_h264(media: Path) -> None:
    rows, [plan] = run(media / "clip.webm")
    assert plan.method == "reencode" and "vp9" in plan.reason
    [row] = rows
    assert "mp4" in inspect(row["input_bytes"])["demuxer"]


def test_plan_video_helper_matches_the_stage(media: Path) -> None:
    _, plan = plan_video(str(media / "dense.mp4"), SegmentationConfig(video_window_s=4.0))
    rows, [stage_plan] = run(media / "dense.mp4", video_window_s=4.0)
    assert plan == stage_plan and len(plan.segments) == len(rows)


def test_segments_are_lazy(media: Path) -> None:
    it: Any = iter(segment_video({"uri": str(media / "sparse.mp4")},
                            SegmentationConfig(video_window_s=4.0), EMB))  # fmt: skip
    first = next(it)
    assert first["segment_index"] == 0 and first["end_s"] == pytest.approx(4.0)
    it.close()  # closing early releases the container without decoding the rest


# --- errors ----------------------------------------------------------------------------------


def test_empty_missing_and_not_media(tmp_path: Path) -> None:
    (tmp_path / "e.mp4").write_bytes(b"")
    assert [r["error_code"] for r in run(tmp_path / "e.mp4")[0]] == ["empty_file"]
    assert [r["error_code"] for r in run(tmp_path / "nope.mp4")[0]] == ["file_not_found"]
    [row] = run(make_not_media(tmp_path / "x.mp4"))[0]
    assert (row["error_stage"], row["error_code"], row["segment_index"]) == (
        "decode", "media_corrupt", -1,
    )  # fmt: skip


def test_audio_only_file_is_cut_as_audio(tmp_path: Path) -> None:
    # A video asset that holds only audio plays: it is cut with the audio settings and its
    # rows are audio input (the video modality sends them as audio).
    rows, plans = run(make_tone_audio(tmp_path / "a.m4a", 12.0), audio_window_s=5.0)
    assert plans == []
    assert [r["error_code"] for r in rows] == [None, None, None]
    assert {r["input_kind"] for r in rows} == {"audio"}
    assert {r["input_format"] for r in rows} == {"mp3"}
    assert [(r["start_s"], round(r["end_s"])) for r in rows] == [(0.0, 5), (5.0, 10), (10.0, 12)]
    assert rows[0]["input_bytes"][:3] in (b"ID3", b"\xff\xfb", b"\xff\xf3")


def test_tags_in_any_encoding_do_not_fail_the_decode(tmp_path: Path) -> None:
    import av
    import numpy as np

    path = tmp_path / "latin1.mp4"
    # Latin-1 bytes where readers expect UTF-8: PyAV failed the open with UnicodeDecodeError.
    with av.open(str(path), "w", format="mp4", metadata_encoding="latin-1") as out:
        out.metadata["title"] = "Café société"
        stream: Any = out.add_stream("libx264", rate=10)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        stream.metadata["handler_name"] = "Vidéo"
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), i * 20, np.uint8), "rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    assert b"Caf\xe9" in path.read_bytes()
    rows, _ = run(path)
    assert [r["error_code"] for r in rows] == [None]
    assert rows[0]["input_kind"] == "video"


def test_truncated_mp4_is_corrupt(media: Path, tmp_path: Path) -> None:
    [row] = run(make_truncated_copy(media / "dense.mp4", tmp_path / "t.mp4", 0.5))[0]
    assert row["error_code"] == "media_corrupt"


def test_truncated_matroska_embeds_the_rest_and_accounts_for_it(
    media: Path, tmp_path: Path
) -> None:
    rows, _ = run(make_truncated_copy(media / "bframes.mkv", tmp_path / "t.mkv", 0.5),
                  video_window_s=4.0)  # fmt: skip
    good, last = rows[:-1], rows[-1]
    assert good and not any(is_dead_letter(r) for r in good)
    assert last["error_code"] == "media_truncated" and last["segment_index"] == len(good)
    assert {r["segment_count"] for r in rows} == {len(rows)}


def test_never_with_sparse_keyframes_is_dead_lettered(media: Path) -> None:
    rows, plans = run(media / "sparse.mp4", video_reencode="never", video_window_s=4.0)
    assert plans == [] and [r["error_code"] for r in rows] == ["reencode_required"]


@pytest.mark.parametrize(
    ("bad", "key"),
    [
        ({"video_reencode": "sometimes"}, "segmentation.video_reencode"),
        ({"video_overlap_s": 20.0}, "segmentation.video_overlap_s"),
        ({"video_max_height": 8}, "segmentation.video_max_height"),
    ],
)
def test_configuration_errors_fail_before_any_work(bad: dict[str, Any], key: str) -> None:
    # One place checks configuration, before any work; the decoder trusts it.
    with pytest.raises(ConfigError) as info:
        validate_segmentation(SegmentationConfig(**bad))
    assert info.value.key == key


# --- segments never exceed their window (the dropped tail stays dropped) --------------------


def decoded_seconds(data: bytes) -> tuple[float, float | None]:
    """(video span as the endpoint measures it: last frame - first + 1/fps, audio seconds)."""
    import av

    with av.open(io.BytesIO(data), "r") as c:
        stream = c.streams.video[0]
        rate = float(stream.average_rate or stream.guessed_rate or 25)
        times = [float(f.time) for f in c.decode(video=0)]
        audio_s = None
        if c.streams.audio:
            c.seek(0)
            samples = [(f.samples, f.sample_rate) for f in c.decode(audio=0)]
            audio_s = sum(n for n, _ in samples) / samples[0][1]
    return max(times) - min(times) + 1 / rate, audio_s


@pytest.mark.parametrize(
    ("seconds", "gop", "method", "segments"),
    [
        # Sparse keyframes: fixed 29.95 s windows; the 0.3 s after 59.9 s is the dropped tail.
        (60.2, 1000, "reencode", ((0.0, 29.95), (29.95, 59.9))),
        # Keyframes at 0 and 29.8 s: one copy segment; the 0.4 s after 29.8 s is dropped.
        (30.2, 149, "copy", ((0.0, 29.8),)),
    ],
)
def test_dropped_tail_does_not_lengthen_the_last_segment(
    tmp_path: Path, seconds: float, gop: int, method: str, segments: tuple[Any, ...]
) -> None:
    fps = 5
    path = make_video(tmp_path / "v.mp4", seconds, fps=fps, size=(32, 32), gop=gop,
                      audio_rate=8000)  # fmt: skip
    rows, [plan] = run(path)
    assert plan.method == method
    flat = [x for bounds in segments for x in bounds]
    assert [x for bounds in plan.segments for x in bounds] == pytest.approx(flat)
    assert not any(is_dead_letter(r) for r in rows)
    assert [x for r in rows for x in (r["start_s"], r["end_s"])] == pytest.approx(flat)
    # The windows cover the video up to the dropped tail (< MIN_TAIL_S = 0.5 s).
    assert seconds - rows[-1]["end_s"] < 0.5
    for r in rows:
        video_s, audio_s = decoded_seconds(r["input_bytes"])
        planned = r["end_s"] - r["start_s"]
        assert video_s <= 30.0 and video_s <= planned + 1 / fps + 1e-3, (
            r["segment_index"],
            video_s,
        )
        assert audio_s is not None and audio_s <= 30.0, (r["segment_index"], audio_s)
        assert audio_s <= planned + 0.025 + 1e-3, (r["segment_index"], audio_s)
        assert audio_s >= planned - 0.3


def test_copy_with_overlap_puts_shared_packets_in_both_segments(media: Path) -> None:
    rows, [plan] = run(media / "dense.mp4", video_window_s=4.0, video_overlap_s=1.0)
    assert plan.method == "copy"
    bounds = [x for r in rows for x in (r["start_s"], r["end_s"])]
    assert bounds == pytest.approx([0.0, 4.0, 3.0, 7.0, 6.0, 10.0, 9.0, 12.5])
    source_keyframes = keyframe_packets(media / "dense.mp4")
    for r in rows:
        info = inspect(r["input_bytes"])
        planned = r["end_s"] - r["start_s"]
        assert info["frames"] == round(planned * 10)
        assert info["first"] == pytest.approx(0.0, abs=1e-3)
        assert info["audio_s"] == pytest.approx(planned, abs=0.2)
        assert info["first_packet"] == source_keyframes[round(r["start_s"], 3)]


@pytest.mark.parametrize("reencode", ["always", "never"])
def test_parts_of_a_split_video_yield_each_segment_once_like_a_whole_cut(
    tmp_path: Path, reencode: str
) -> None:
    """Re-encoding: each part seeks near its first segment and encodes its own (same frames and
    audio length as a whole cut). Stream copy: the first part cuts the whole file."""
    from pipelines.stages._decode_common import decoded_rows

    path = make_video(tmp_path / "v.mp4", 42.0, fps=10, gop=30)
    seg = SegmentationConfig(video_window_s=10, video_reencode=reencode)

    def rows(part: str | None) -> list[dict[str, Any]]:
        asset = {"asset_id": "v1", "uri": str(path), "modality": "video", "part": part}
        return list(decoded_rows(asset, segment_video(asset, seg, EMB)))

    whole = rows(None)
    parts = [rows(f"{k}/3") for k in range(3)]
    split = [r for p in parts for r in p]
    assert not any(is_dead_letter(r) for r in whole + split)
    assert len(whole) == 5
    assert [r["segment_index"] for r in split] == list(range(5))
    assert {r["segment_count"] for r in split} == {5}
    if reencode == "always":
        assert [len(p) for p in parts] == [2, 2, 1]
    else:
        assert [len(p) for p in parts] == [5, 0, 0]
    for a, b in zip(whole, split, strict=True):
        assert (a["start_s"], a["end_s"]) == (b["start_s"], b["end_s"])
        x, y = inspect(a["input_bytes"]), inspect(b["input_bytes"])
        assert x["frames"] == y["frames"], (a["segment_index"], x, y)
        assert x["first"] == pytest.approx(y["first"], abs=1e-3)
        assert x["audio_s"] == pytest.approx(y["audio_s"], abs=0.03)

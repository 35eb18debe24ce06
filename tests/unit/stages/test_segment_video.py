"""segment_video: the copy/re-encode decision, segment bounds and contents, and dead letters."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nova_devkit.media.av import (
    make_not_media,
    make_tone_audio,
    make_truncated_copy,
    make_video,
)
from pipelines.config.schema import EmbeddingConfig, SegmentationConfig
from pipelines.core.errors import ConfigError, DataError
from pipelines.core.rows import SEGMENT_COLUMNS, is_dead_letter
from pipelines.stages.segment_video import (
    MAX_SEGMENT_BYTES,
    VideoCutPlan,
    VideoProbe,
    plan_video,
    plan_video_cuts,
    segment_video,
)

EMB = EmbeddingConfig()


def run(path: Path | str, **seg: Any) -> tuple[list[dict[str, Any]], list[VideoCutPlan]]:
    plans: list[VideoCutPlan] = []
    asset = {"asset_id": "v1", "uri": str(path), "modality": "video"}
    rows = list(segment_video(asset, SegmentationConfig(**seg), EMB, on_plan=plans.append))
    return rows, plans


def inspect(data: bytes) -> dict[str, Any]:
    """Decode an mp4 segment: demuxer, frame count, first/last frame time, height, audio secs."""
    import av

    with av.open(io.BytesIO(data), "r") as c:
        times = [f.time for f in c.decode(video=0)]
        height = c.streams.video[0].height
        audio_s = None
        if c.streams.audio:
            c.seek(0)
            n = rate = 0
            for f in c.decode(audio=0):
                n += f.samples
                rate = f.sample_rate
            audio_s = n / rate
        c.seek(0)
        first_packet = next((p for p in c.demux(video=0) if p.size), None)
        return {
            "demuxer": str(c.format.name),
            "frames": len(times),
            "first": times[0],
            "span": times[-1] - times[0] + 0.1,  # 10 fps sources
            "height": height,
            "audio_s": audio_s,
            "first_packet": bytes(first_packet) if first_packet is not None else b"",
        }


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


def probe(keyframes: list[float], duration: float, **kw: Any) -> VideoProbe:
    fields: dict[str, Any] = dict(video_codec="h264", audio_codec="aac", origin_s=0.0,
                                  duration_s=duration, declared_s=duration, keyframes_s=keyframes,
                                  width=640, height=360, fps=25.0)  # fmt: skip
    fields.update(kw)
    return VideoProbe(**fields)


# --- the decision rule (pure) ----------------------------------------------------------------


def test_dense_keyframes_are_stream_copied_at_keyframes() -> None:
    plan = plan_video_cuts(probe([float(k) for k in range(0, 70, 2)], 70.0), 29.95, 29.95)
    assert plan.method == "copy"
    assert plan.segments == ((0.0, 28.0), (28.0, 56.0), (56.0, 70.0))


def test_sparse_keyframes_are_re_encoded_on_fixed_windows() -> None:
    plan = plan_video_cuts(probe([0.0, 20.0, 40.0, 60.0], 70.0), 29.95, 29.95)
    assert plan.method == "reencode" and "sparse" in plan.reason
    assert plan.segments == ((0.0, 29.95), (29.95, 59.9), (59.9, 70.0))


def test_cut_tolerance_boundary() -> None:
    # Window 10 s -> tolerance 1 s: a keyframe at 9.0 is close enough, one at 8.9 is not.
    assert plan_video_cuts(probe([0.0, 9.0, 18.0], 20.0), 10.0, 10.0).method == "copy"
    assert plan_video_cuts(probe([0.0, 8.9, 17.8], 20.0), 10.0, 10.0).method == "reencode"


def test_overlap_with_copy_starts_each_segment_at_a_keyframe() -> None:
    plan = plan_video_cuts(probe([float(k) for k in range(0, 30)], 30.0), 10.0, 8.0)
    assert plan.method == "copy"
    assert plan.segments == ((0.0, 10.0), (8.0, 18.0), (16.0, 26.0), (24.0, 30.0))


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"video_codec": "vp9"}, "video codec"),
        ({"audio_codec": "opus"}, "audio codec"),
        ({"height": 1080}, "video_max_height"),
        ({"packet_times": np.array([1.0]), "packet_sizes": np.array([MAX_SEGMENT_BYTES + 1])},
         "bytes"),
    ],
)  # fmt: skip
def test_dense_but_not_copyable_is_re_encoded(change: dict[str, Any], why: str) -> None:
    plan = plan_video_cuts(probe([float(k) for k in range(10)], 10.0, **change), 29.95, 29.95)
    assert plan.method == "reencode" and why in plan.reason


def test_reencode_modes() -> None:
    dense = probe([float(k) for k in range(10)], 10.0)
    assert plan_video_cuts(dense, 29.95, 29.95, "always").method == "reencode"
    assert plan_video_cuts(dense, 29.95, 29.95, "never").method == "copy"
    with pytest.raises(DataError) as err:
        plan_video_cuts(probe([0.0, 40.0], 50.0), 29.95, 29.95, "never")
    assert err.value.code == "reencode_required"


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


def test_audio_only_file_has_no_video_stream(tmp_path: Path) -> None:
    [row] = run(make_tone_audio(tmp_path / "a.m4a", 2.0))[0]
    assert row["error_code"] == "no_video_stream"


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


def test_configuration_errors_fail_before_any_work() -> None:
    with pytest.raises(ConfigError, match="video_reencode"):
        segment_video({"uri": "x"}, SegmentationConfig(video_reencode="sometimes"), EMB)
    with pytest.raises(ConfigError, match="video_overlap_s"):
        segment_video({"uri": "x"}, SegmentationConfig(video_overlap_s=20.0), EMB)


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


# --- the probe: MP4 sample table vs demuxing every packet -------------------------------------


def _remux_mp4(src: Path, dst: Path, movflags: str) -> Path:
    import av

    with (
        av.open(str(src)) as inp,
        av.open(str(dst), "w", format="mp4", options={"movflags": movflags}) as out,
    ):
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        for packet in inp.demux():
            if packet.dts is None:
                continue
            packet.stream = streams[packet.stream.index]
            out.mux(packet)
    return dst


@pytest.fixture(scope="module")
def mp4s(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("mp4")
    make_video(d / "plain.mp4", 12.5, fps=10, size=(96, 64), gop=10, seed=5)
    # B-frames: decode order differs from presentation order, keyframes' times differ by both.
    make_video(d / "bframes.mp4", 12.5, fps=10, size=(96, 64), gop=10, bframes=3, preset="fast")
    make_video(d / "bframes.mov", 9.0, fps=10, size=(96, 64), gop=10, bframes=2, preset="fast")
    make_video(d / "silent.mp4", 9.0, fps=25, size=(96, 64), gop=25, with_audio=False,
               bframes=3, preset="fast")  # fmt: skip
    _remux_mp4(d / "bframes.mp4", d / "faststart.mp4", "faststart")
    _remux_mp4(d / "bframes.mp4", d / "fragmented.mp4", "frag_keyframe+empty_moov")
    data = (d / "faststart.mp4").read_bytes()
    (d / "cut.mp4").write_bytes(data[: int(len(data) * 0.6)])  # header intact, samples cut off
    return d


def _both_probes(path: Path) -> tuple[VideoProbe | None, VideoProbe]:
    from pipelines.stages.segment_audio import open_media
    from pipelines.stages.segment_video import _audio_stream, _probe_by_demux, _probe_from_index

    with open_media(str(path)) as c:
        vstream, astream = c.streams.video[0], _audio_stream(c)
        fast = _probe_from_index(c, vstream, astream)
        c.seek(0)
        return fast, _probe_by_demux(c, vstream, astream)


@pytest.mark.parametrize(
    "name", ["plain.mp4", "bframes.mp4", "bframes.mov", "silent.mp4", "faststart.mp4",
             "fragmented.mp4"],
)  # fmt: skip
def test_sample_table_probe_measures_what_demuxing_measures(mp4s: Path, name: str) -> None:
    fast, slow = _both_probes(mp4s / name)
    assert fast is not None, "the sample table should have been usable"
    assert fast.keyframes_s == slow.keyframes_s  # presentation times, exactly
    assert fast.origin_s == slow.origin_s
    assert fast.duration_s == pytest.approx(slow.duration_s, abs=1e-9)
    assert fast.declared_s == slow.declared_s and not fast.truncated
    assert (fast.video_codec, fast.audio_codec, fast.width, fast.height, fast.fps) == (
        slow.video_codec, slow.audio_codec, slow.width, slow.height, slow.fps
    )  # fmt: skip
    # Byte sizes per segment agree (the table may also list an encoder-priming audio packet).
    for start in (0.0, 3.0, 6.0):
        assert fast.bytes_between(start, start + 4) == pytest.approx(
            slow.bytes_between(start, start + 4), rel=0.05
        )


def test_sample_table_of_a_cut_file_is_not_trusted(mp4s: Path) -> None:
    fast, slow = _both_probes(mp4s / "cut.mp4")
    assert fast is None  # the header lists samples past the end of the file
    assert slow.truncated
    rows, _ = run(mp4s / "cut.mp4", video_window_s=4.0)
    assert rows[-1]["error_code"] == "media_truncated"
    assert not any(is_dead_letter(r) for r in rows[:-1])


@pytest.mark.parametrize("name", ["bframes.mp4", "bframes.mov", "silent.mp4"])
def test_copy_segments_are_the_same_whichever_probe_ran(
    mp4s: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipelines.stages.segment_video as sv

    rows, [plan] = run(mp4s / name, video_window_s=4.0)
    assert plan.method == "copy"
    monkeypatch.setattr(sv, "_probe_from_index", lambda *a: None)
    slow_rows, [slow_plan] = run(mp4s / name, video_window_s=4.0)
    assert plan == slow_plan
    assert [r["input_bytes"] for r in rows] == [r["input_bytes"] for r in slow_rows]
    for r in rows:
        info = inspect(r["input_bytes"])
        assert info["first"] == pytest.approx(0.0, abs=1e-6)

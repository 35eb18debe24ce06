"""The probe: an MP4/MOV sample table measures what demuxing every packet measures."""

from __future__ import annotations

from pathlib import Path

import pytest

from nova_devkit.media.av import make_video
from pipelines.core.rows import is_dead_letter
from pipelines.stages.video.probe_result import VideoProbe
from tests.unit.stages.video.helpers import inspect, run


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
    from pipelines.stages.video.probe import audio_stream, probe_by_demux
    from pipelines.stages.video.sample_table import probe_from_sample_table

    with open_media(str(path)) as c:
        vstream, astream = c.streams.video[0], audio_stream(c)
        fast = probe_from_sample_table(c, vstream, astream)
        c.seek(0)
        return fast, probe_by_demux(c, vstream, astream)


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
    import pipelines.stages.video.probe as video_probe

    rows, [plan] = run(mp4s / name, video_window_s=4.0)
    assert plan.method == "copy"
    monkeypatch.setattr(video_probe, "probe_from_sample_table", lambda *a: None)
    slow_rows, [slow_plan] = run(mp4s / name, video_window_s=4.0)
    assert plan == slow_plan
    assert [r["input_bytes"] for r in rows] == [r["input_bytes"] for r in slow_rows]
    for r in rows:
        info = inspect(r["input_bytes"])
        assert info["first"] == pytest.approx(0.0, abs=1e-6)

"""plan_video_cuts: the copy/re-encode decision rule and the segment bounds (pure)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from pipelines.core.errors import RecordError
from pipelines.stages.video.plan import MAX_SEGMENT_BYTES, plan_video_cuts
from pipelines.stages.video.probe_result import VideoProbe


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
    with pytest.raises(RecordError) as err:
        plan_video_cuts(probe([0.0, 40.0], 50.0), 29.95, 29.95, "never")
    assert err.value.code == "reencode_required"

"""Shared fixtures: the local Bedrock endpoint, its S3, and media generated at test time.

Credentials: ``pytest_configure`` sets dummy ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` /
``AWS_DEFAULT_REGION`` (and clears profile and session-token variables) for the whole session, so
no test can pick up, or need, real credentials.

Fixtures (names and shapes are stable; other test modules rely on them):

``endpoints`` (session)
    :class:`nova_devkit.emulator.launch.Endpoints` from ``local_endpoints(EmulatorConfig())``,
    started on first use: ``.bedrock_url``, ``.s3_url``, ``.region``, ``.emulator``
    (:class:`~nova_devkit.emulator.server.EmulatorServer`: ``.stats()``, ``.reset()``,
    ``.configure(...)``, ``.script([...])``, ``.requests``).
``emulator`` (function)
    The same ``Endpoints``, after ``emulator.reset()``: start-up config (no quotas, latency or
    faults), empty stats, records, scripts and async jobs; the quota guards of a connected Ray
    forget the rates they learned (:mod:`tests.quota_guards`). Use it in every test that asserts
    on stats or changes the configuration.
``bedrock_runtime`` (function)
    A boto3 ``bedrock-runtime`` client on the emulator (``total_max_attempts=1``: every error
    reaches the test). Implies ``emulator`` (reset).
``s3_endpoint`` (session)
    The local S3's URL.
``s3`` (function)
    A boto3 S3 client on the local S3.
``bucket`` (function)
    A new, empty bucket's name (unique per test).
``ray_session`` (session)
    One local Ray (:func:`tests.local_ray.start_local_ray`) for every in-process job of the
    session, faults and integration alike. The harness cases (``tests/faults/test_wire_*.py``)
    stop it while they run on a Ray of their own, and start it again after them.
``media`` (session)
    :class:`Media`: tiny PNG/JPEG/GIF/WEBP images, WAV/MP3 audio and MP4 video (with or
    without an audio track), generated with Pillow and PyAV, deterministic for the same
    arguments.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest

from nova_devkit.emulator.config import EmulatorConfig
from nova_devkit.emulator.launch import Endpoints, local_endpoints, use_dummy_credentials
from tests.local_ray import start_local_ray
from tests.quota_guards import forget_quota_guards


def pytest_configure(config: pytest.Config) -> None:
    """Dummy AWS credentials for the whole session (before any test module is imported)."""
    use_dummy_credentials()


@pytest.fixture(scope="session")
def endpoints() -> Iterator[Endpoints]:
    """moto S3 + the Bedrock emulator, once per session."""
    with local_endpoints(EmulatorConfig()) as eps:
        yield eps


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """The session's local Ray (2 CPUs)."""
    import ray

    start_local_ray()
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def s3_endpoint(endpoints: Endpoints) -> str:
    """The URL of the session's local S3 (moto server mode)."""
    return endpoints.s3_url


@pytest.fixture
def emulator(endpoints: Endpoints) -> Endpoints:
    """The session's endpoints, reset (config, stats, records, scripts, async jobs), and no
    quota guard still pacing at what an earlier test's throttles taught it."""
    endpoints.emulator.reset()
    forget_quota_guards()
    return endpoints


@pytest.fixture(scope="session")
def _session_clients(endpoints: Endpoints) -> dict[str, Any]:
    # boto3 clients are thread-safe and slow to build (service model loading): one per session.
    return {
        "bedrock-runtime": endpoints.bedrock_runtime_client(max_attempts=1),
        "s3": endpoints.s3_client(),
    }


@pytest.fixture
def bedrock_runtime(emulator: Endpoints, _session_clients: dict[str, Any]) -> Any:
    """boto3 bedrock-runtime client on the (reset) emulator; botocore retries disabled."""
    return _session_clients["bedrock-runtime"]


@pytest.fixture
def s3(_session_clients: dict[str, Any]) -> Any:
    """boto3 S3 client on the local S3."""
    return _session_clients["s3"]


@pytest.fixture
def bucket(s3: Any) -> str:
    """A fresh bucket for this test."""
    name = f"test-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    return name


class Media:
    """Generates small test media in memory (deterministic for the same arguments)."""

    # -- images ------------------------------------------------------------------------------

    def image_array(self, pattern: str = "gradient", size: tuple[int, int] = (64, 48)) -> Any:
        """RGB uint8 array: gradient, checker, circle, stripes, noise, or a colour name."""
        w, h = size
        y, x = np.mgrid[0:h, 0:w]
        if pattern == "gradient":
            arr = np.stack([x * 255 // max(1, w - 1), y * 255 // max(1, h - 1), 128 + 0 * x], -1)
        elif pattern == "checker":
            c = ((x // 8 + y // 8) % 2) * 255
            arr = np.stack([c, c, c], -1)
        elif pattern == "circle":
            inside = (x - w / 2) ** 2 + (y - h / 2) ** 2 < (min(w, h) / 3) ** 2
            arr = np.stack([np.where(inside, 240, 20), np.where(inside, 60, 200), 40 + 0 * x], -1)
        elif pattern == "stripes":
            c = (x // 6 % 2) * 200 + 30
            arr = np.stack([c, 255 - c, c // 2], -1)
        elif pattern == "noise":
            arr = np.random.default_rng(7).integers(0, 256, (h, w, 3))
        else:
            from PIL import ImageColor

            arr = np.broadcast_to(np.array(ImageColor.getrgb(pattern)[:3]), (h, w, 3))
        return np.ascontiguousarray(arr, dtype=np.uint8)

    def image(
        self,
        pattern: str = "gradient",
        fmt: str = "png",
        size: tuple[int, int] = (64, 48),
        quality: int = 90,
    ) -> bytes:
        """Encoded image bytes (``fmt``: png, jpeg, gif, webp)."""
        from PIL import Image

        im = Image.fromarray(self.image_array(pattern, size))
        buf = io.BytesIO()
        kwargs: dict[str, Any] = {"quality": quality} if fmt in ("jpeg", "webp") else {}
        im.save(buf, format=fmt.upper(), **kwargs)
        return buf.getvalue()

    # -- audio -------------------------------------------------------------------------------

    def signal(self, parts: Sequence[tuple[float, Sequence[float]]], rate: int = 16_000) -> Any:
        """Float samples: for each (seconds, frequencies) part, a chord of those sines (an empty
        list is silence), plus faint seeded noise."""
        chunks = []
        for seconds, freqs in parts:
            t = np.arange(int(seconds * rate)) / rate
            s = sum((np.sin(2 * np.pi * f * t) for f in freqs), np.zeros_like(t))
            chunks.append(0.3 * s / max(1, len(freqs)))
        out = np.concatenate(chunks)
        return out + 0.002 * np.random.default_rng(3).standard_normal(out.size)

    def audio(
        self,
        parts: Sequence[tuple[float, Sequence[float]]] = ((3.0, (440.0,)),),
        fmt: str = "wav",
        rate: int = 16_000,
    ) -> bytes:
        """Encoded audio (``fmt``: wav, mp3) of :meth:`signal`."""
        import av

        samples = self.signal(parts, rate)
        pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16).reshape(1, -1)
        buf = io.BytesIO()
        codec = {"wav": "pcm_s16le", "mp3": "libmp3lame"}[fmt]
        with av.open(buf, mode="w", format=fmt) as out:
            stream = out.add_stream(codec, rate=rate, layout="mono")
            frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
        return buf.getvalue()

    # -- video -------------------------------------------------------------------------------

    def video(
        self,
        seconds: float = 2.0,
        *,
        patterns: Sequence[str] = ("gradient",),
        audio_parts: Sequence[tuple[float, Sequence[float]]] | None = None,
        fps: int = 8,
        size: tuple[int, int] = (64, 48),
        fmt: str = "mp4",
    ) -> bytes:
        """An H.264 video; ``patterns`` are shown in equal consecutive spans (a moving bar on
        top); ``audio_parts`` adds an AAC track (None: no audio track at all)."""
        import av

        buf = io.BytesIO()
        n = int(seconds * fps)
        with av.open(buf, mode="w", format=fmt) as out:
            vs = out.add_stream("libx264", rate=fps)
            vs.width, vs.height, vs.pix_fmt = size[0], size[1], "yuv420p"
            vs.options = {"preset": "ultrafast"}
            as_ = out.add_stream("aac", rate=16_000, layout="mono") if audio_parts else None
            for i in range(n):
                arr = self.image_array(patterns[i * len(patterns) // n], size).copy()
                arr[:4, (i * 3) % size[0] : (i * 3) % size[0] + 4] = 255
                frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
                frame.pts = i
                for packet in vs.encode(frame):
                    out.mux(packet)
            for packet in vs.encode(None):
                out.mux(packet)
            if as_ is not None and audio_parts:
                samples = self.signal(audio_parts).astype(np.float32).reshape(1, -1)
                frame = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
                frame.sample_rate = 16_000
                for packet in as_.encode(frame):
                    out.mux(packet)
                for packet in as_.encode(None):
                    out.mux(packet)
        return buf.getvalue()


@pytest.fixture(scope="session")
def media() -> Media:
    """Test media generator (see :class:`Media`)."""
    return Media()

"""What the modalities' deeper looks (:meth:`Modality.identify`) share: opening a local file with
the library that would decode it, once per file, and small content tests.

- :func:`media_streams`: PyAV's view of a container (its demuxer, its real video streams, its
  audio streams), cached per file so that the video and audio modalities probe a file once;
- :func:`xml_root`: the root element's name of an XML text (SVG, FictionBook);
- :func:`zip_names`: the member names of a ZIP file (XPS, EPUB, CBZ);
- :func:`extension`: a path's extension, lower case, without the dot.

None of these raises for any content: a file that cannot be opened gives None.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from typing import Any

# FFmpeg demuxers of still images and text art: a file they open is not audio or video.
STILL_DEMUXERS = frozenset(
    {"image2", "gif", "webp", "apng", "bmp", "tiff", "ico", "tty", "fits", "msp", "jpegxl_anim"}
)


@dataclass(frozen=True)
class Streams:
    """What FFmpeg found in a container."""

    demuxer: str
    video: int  # video streams that are not cover art (attached pictures)
    audio: int

    @property
    def still(self) -> bool:
        """Opened by an image demuxer: a picture, not a video."""
        names = set(self.demuxer.split(","))
        return bool(names & STILL_DEMUXERS) or any(n.endswith("_pipe") for n in names)


def real_video_streams(container: Any) -> list[Any]:
    """The container's video streams, less cover art (an attached picture in an MP3 or M4A is
    shown by FFmpeg as a one-frame video stream)."""
    import av

    attached = int(av.stream.Disposition.attached_pic)
    return [s for s in container.streams.video if not int(s.disposition) & attached]


def media_streams(path: str) -> Streams | None:
    """PyAV's view of the local file at ``path``, or None when FFmpeg cannot open it."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return _media_streams(path, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=64)
def _media_streams(path: str, mtime_ns: int, size: int) -> Streams | None:
    del mtime_ns, size  # cache keys: a changed file is probed again
    try:
        import av

        # Tags in any encoding: undecodable bytes become U+FFFD instead of failing the open.
        with av.open(path, "r", metadata_errors="replace") as container:
            return Streams(
                demuxer=str(container.format.name or ""),
                video=len(real_video_streams(container)),
                audio=len(container.streams.audio),
            )
    except Exception:  # FFmpeg errors, EOF, anything a damaged file provokes
        return None


_XML_PROLOG = re.compile(
    rb"\A(?:\xef\xbb\xbf)?\s*(?:<\?xml[^>]*\?>\s*)?(?:(?:<!--.*?-->|<!DOCTYPE[^>]*>|<\?[^>]*\?>)\s*)*"
    rb"<([A-Za-z_][\w.:-]*)",
    re.DOTALL,
)


def xml_root(head: bytes) -> str | None:
    """The name of the first element of an XML text (after the prolog, comments and doctype),
    without a namespace prefix; None when ``head`` does not start like XML."""
    m = _XML_PROLOG.match(head)
    if m is None:
        return None
    return m.group(1).decode("ascii", "replace").rpartition(":")[2]


def zip_names(path: str) -> list[str] | None:
    """The member names of a ZIP file, or None when it is not one (or is damaged)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            return zf.namelist()
    except Exception:
        return None


def extension(path: str) -> str:
    """``path``'s extension, lower case, without the dot ("" when it has none)."""
    return os.path.splitext(path)[1].lower().lstrip(".")

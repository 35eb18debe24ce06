"""The modality registry: one module per modality, and the only place that knows their names.

Built in: ``text``, ``image``, ``document``, ``audio``, ``video`` (one module each beside this one).
A new modality is a :class:`~pipelines.modalities.base.Modality` subclass passed to
:func:`register`, from anywhere (a plugin, a test); nothing under ``pipelines/`` changes.

Stages that run on Ray workers take a :class:`Registry` snapshot when they are built in the driver
(:func:`current`), so a modality registered in the driver travels with the stage to every worker.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

from pipelines.modalities.base import Modality, Usage

__all__ = ["Modality", "Registry", "Usage", "current", "get", "names", "register"]


class Registry(Mapping[str, Modality]):
    """Modalities by name, in registration order (which also breaks ties when sniffing)."""

    def __init__(self, modalities: Mapping[str, Modality] | None = None) -> None:
        self._by_name: dict[str, Modality] = dict(modalities or {})

    def __getitem__(self, name: str) -> Modality:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def add(self, modality: Modality) -> None:
        if not getattr(modality, "name", ""):
            raise ValueError(f"{type(modality).__name__} has no name")
        self._by_name[modality.name] = modality

    def snapshot(self) -> Registry:
        return Registry(self._by_name)

    def of(self, row: Mapping[str, Any]) -> Modality:
        """The modality of a row (KeyError naming the known ones when it has none)."""
        name = row.get("modality")
        try:
            return self._by_name[str(name)]
        except KeyError:
            raise KeyError(f"unknown modality {name!r}; known: {sorted(self._by_name)}") from None

    def extension_map(self) -> dict[str, str]:
        """File extension (lower case, no dot) -> modality name."""
        out: dict[str, str] = {}
        for m in self._by_name.values():
            for ext in m.extensions:
                out.setdefault(ext, m.name)
        return out

    def for_path(self, path: str | None) -> Modality | None:
        """The modality a file name's extension implies, or None."""
        if not path:
            return None
        ext = os.path.splitext(path)[1].lower().lstrip(".")
        name = self.extension_map().get(ext)
        return self._by_name[name] if name else None

    def sniff(self, head: bytes, path: str = "") -> Modality | None:
        """The modality of a file from its first bytes; the extension decides between modalities
        whose containers fit equally well. None when no modality recognises the content."""
        return self._pick([(m.sniff(head), m) for m in self._by_name.values()], path)

    def identify(self, head: bytes, path: str) -> Modality | None:
        """The modality of the local file at ``path`` (``head``: its first bytes).

        The first bytes decide when one modality recognises its own signature in them (score
        2, alone); otherwise (a container that may hold audio or video, text that may be a
        plain-text image format, nothing recognised) each modality's deeper look
        (:meth:`Modality.identify`: Pillow, PyAV, the ZIP's members) replaces its sniff score
        where it has an answer, and the extension breaks ties as in :meth:`sniff`.
        """
        cheap = [(m.sniff(head), m) for m in self._by_name.values()]
        best = max((s for s, _ in cheap), default=0)
        if best == 2 and sum(1 for s, _ in cheap if s == 2) == 1:
            return self._pick(cheap, path)
        scores = []
        for score, m in cheap:
            try:
                deep = m.identify(path, head)
            except Exception:  # a deeper look must not sink a scan
                deep = None
            scores.append((score if deep is None else deep, m))
        return self._pick(scores, path)

    def _pick(self, scores: list[tuple[int, Modality]], path: str) -> Modality | None:
        best = max((s for s, _ in scores), default=0)
        if best == 0:
            return None
        candidates = [m for s, m in scores if s == best]
        hinted = self.for_path(path)
        if hinted is not None and hinted in candidates:
            return hinted
        return candidates[0]


def _builtins() -> Registry:
    from pipelines.modalities.audio import Audio
    from pipelines.modalities.document import Document
    from pipelines.modalities.image import Image
    from pipelines.modalities.text import Text
    from pipelines.modalities.video import Video

    reg = Registry()
    # Order breaks sniffing ties: a container that may be video or audio is video unless its
    # extension says audio; text is the last resort.
    for m in (Document(), Image(), Video(), Audio(), Text()):
        reg.add(m)
    return reg


_REGISTRY = _builtins()


def register(modality: Modality) -> None:
    """Add (or replace) a modality in this process's registry."""
    _REGISTRY.add(modality)


def current() -> Registry:
    """A snapshot of this process's registry (what stages carry to their workers)."""
    return _REGISTRY.snapshot()


def get(name: str) -> Modality:
    return _REGISTRY[name]


def names() -> tuple[str, ...]:
    return tuple(_REGISTRY)

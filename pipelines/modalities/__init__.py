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
        scores = [(m.sniff(head), m) for m in self._by_name.values()]
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

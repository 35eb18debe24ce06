"""Collections behind aliases: names, what a collection records, and where a run writes.

``qdrant.collection=docs`` names an **alias**. The first backfill creates the physical collection
``docs_v1`` and the alias ``docs`` pointing to it; a migration builds ``docs_v2`` and switches the
alias (``pipelines.migrate``). Searchers and runs use the alias; the journal keys its entries by
the physical collection (:func:`pipelines.backfill.collection_key`).

Every collection records the parameters it was built with in its own Qdrant metadata (key
:data:`META_KEY`: the embedding and segmentation configs, the fingerprint per modality, the use
case, the alias, and for a migration's collection where it came from and how far it got). The
record travels with the collection (another machine, another journal), and lets a later run
through the alias write with those parameters or say exactly what to change
(``parameters_from``).

A collection made by an earlier version under the plain name ``docs`` keeps working (runs write
to it and say how to adopt it); :func:`adopt` puts it behind an alias of its own name (Qdrant
refuses an alias named like an existing collection): it is copied to ``docs_v1``, the copy
checked, the plain one dropped and the alias created. See ``docs/migrations.md``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pipelines.config.schema import BackfillJobConfig, EmbeddingConfig, SegmentationConfig
from pipelines.core.errors import ConfigError
from pipelines.stores import open_store

META_KEY = "nova_embed"
RECORD_VERSION = 1

Say = Callable[[str], None]
C = TypeVar("C", bound=BackfillJobConfig)


# -- names ---------------------------------------------------------------------------------------


def versioned(alias: str, version: int) -> str:
    """The physical name of ``alias``'s version ``version`` (``docs_v2``)."""
    return f"{alias}_v{version}"


def version_of(alias: str, name: str) -> int | None:
    """``name``'s version number when it is one of ``alias``'s physical collections."""
    m = re.fullmatch(re.escape(alias) + r"_v(\d+)", name)
    return int(m.group(1)) if m else None


def next_version(names: list[str], alias: str) -> str:
    """The first unused version after every existing one of ``alias``."""
    taken = [v for v in (version_of(alias, n) for n in names) if v is not None]
    return versioned(alias, max(taken, default=0) + 1)


# -- what a collection records -------------------------------------------------------------------


@dataclass
class Recorded:
    """The parameters a collection was built with (its metadata under :data:`META_KEY`)."""

    embedding: EmbeddingConfig
    segmentation: SegmentationConfig
    fingerprints: dict[str, str]
    usecase: str = ""
    alias: str | None = None
    # For a migration's collection: {"from", "strategy", "status", "run_id", ...}.
    migration: dict[str, Any] | None = None
    # Keyword vectors beside the dense ones ({"vector", "scheme", "modifier"}), or None.
    keywords: dict[str, Any] | None = None

    @staticmethod
    def of(meta: Mapping[str, Any]) -> Recorded | None:
        """The record in a collection's metadata, or None (made by an earlier version)."""
        held = meta.get(META_KEY)
        if not isinstance(held, Mapping) or "embedding" not in held:
            return None
        return Recorded(
            embedding=_dataclass(EmbeddingConfig, held["embedding"]),
            segmentation=_dataclass(SegmentationConfig, held.get("segmentation") or {}),
            fingerprints=dict(held.get("fingerprints") or {}),
            usecase=str(held.get("usecase") or ""),
            alias=held.get("alias"),
            migration=dict(held["migration"]) if held.get("migration") else None,
            keywords=dict(held["keywords"]) if held.get("keywords") else None,
        )

    def to_meta(self) -> dict[str, Any]:
        return {
            META_KEY: {
                "version": RECORD_VERSION,
                "embedding": dataclasses.asdict(self.embedding),
                "segmentation": dataclasses.asdict(self.segmentation),
                "fingerprints": dict(self.fingerprints),
                "usecase": self.usecase,
                "alias": self.alias,
                "migration": self.migration,
                "keywords": self.keywords,
            }
        }


T = TypeVar("T")


def _dataclass(cls: type[T], values: Mapping[str, Any]) -> T:
    # Keys a later version added (or removed) must not make an old record unreadable.
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in values.items() if k in names})


def fingerprints_of(
    emb: EmbeddingConfig, seg: SegmentationConfig, modalities: list[str]
) -> dict[str, str]:
    from pipelines.core.ids import fingerprint

    return {m: fingerprint(emb, seg, m) for m in modalities}


def record_of(
    cfg: BackfillJobConfig, alias: str | None, migration: dict[str, Any] | None = None
) -> Recorded:
    """What a collection built by ``cfg`` records."""
    from pipelines.keywords import SCHEME

    keywords = (
        {"vector": cfg.keywords.vector_name, "scheme": SCHEME, "modifier": "idf"}
        if cfg.keywords.enabled
        else None
    )
    return Recorded(
        embedding=dataclasses.replace(cfg.embedding),
        segmentation=dataclasses.replace(cfg.segmentation),
        fingerprints=fingerprints_of(cfg.embedding, cfg.segmentation, cfg.usecase.modalities),
        usecase=cfg.usecase.name,
        alias=alias,
        migration=migration,
        keywords=keywords,
    )


def same_vectors(a: Mapping[str, str], b: Mapping[str, str]) -> bool:
    """True when two fingerprint maps agree on every modality both cover."""
    from pipelines.core.journal import same_fingerprint

    return all(same_fingerprint(a[m], b[m]) for m in a.keys() & b.keys())


def parameter_changes(
    old_emb: EmbeddingConfig,
    old_seg: SegmentationConfig,
    new_emb: EmbeddingConfig,
    new_seg: SegmentationConfig,
) -> dict[str, tuple[Any, Any]]:
    """Every key whose value differs: ``{"embedding.dimension": (3072, 256), ...}``."""
    out: dict[str, tuple[Any, Any]] = {}
    for prefix, old, new in (
        ("embedding", dataclasses.asdict(old_emb), dataclasses.asdict(new_emb)),
        ("segmentation", dataclasses.asdict(old_seg), dataclasses.asdict(new_seg)),
    ):
        for key in old.keys() | new.keys():
            if old.get(key) != new.get(key):
                out[f"{prefix}.{key}"] = (old.get(key), new.get(key))
    return dict(sorted(out.items()))


def overrides(changes: Mapping[str, tuple[Any, Any]], side: int) -> str:
    """``key=value`` overrides of one side (0 old, 1 new) of :func:`parameter_changes`."""
    return " ".join(f"{k}={v[side]}" for k, v in changes.items())


# -- where a run writes --------------------------------------------------------------------------


def aim_collection(cfg: C, say: Say) -> C:
    """``cfg`` aimed at the physical collection its ``qdrant.collection`` stands for.

    - an alias: the collection it points to;
    - ``qdrant.physical_collection`` set (a migration building the next version): that one;
    - a collection made by an earlier version under that plain name: that collection (with a
      line saying how to adopt it);
    - nothing yet: ``<name>_v1`` (or the next free version), created with its record, and the
      alias pointing to it.

    When the collection records parameters that would change the vectors, the run writes with
    them (``parameters_from=collection``, said in one line) or stops naming the keys to change
    (``parameters_from=config``). The returned config has ``qdrant.collection`` set to the
    physical name and ``qdrant.physical_collection`` cleared.
    """
    name = cfg.qdrant.collection
    store = open_store(cfg.qdrant, cfg.embedding, cfg.segmentation, cfg.keywords)
    store.open()
    try:
        alias: str | None = name
        create_alias = False
        if cfg.qdrant.physical_collection:
            physical = cfg.qdrant.physical_collection
        else:
            target = store.resolve_alias(name)
            names = store.collection_names()
            if target is not None:
                physical = target
            elif name in names:
                physical, alias = name, None
                pointing = sorted(a for a, c in store.aliases().items() if c == name)
                if pointing:
                    say(
                        f"writing to the physical collection {name!r} directly "
                        f"(alias {pointing[0]!r} points to it)"
                    )
                else:
                    say(
                        f"collection {name!r} is not behind an alias (made by an earlier "
                        f"version); adopt it: python -m jobs.migrate adopt=true "
                        f"qdrant.collection={name} (docs/migrations.md)"
                    )
            else:
                physical, create_alias = next_version(names, name), True
        phys = store.for_collection(physical)
        held = Recorded.of(phys.metadata())
        if held is not None:
            cfg = _follow(cfg, held, physical, alias, say)
        if phys.exists():
            cfg = _follow_keywords(cfg, phys.keyword_vector(), physical, say)
        else:
            phys = store.for_collection(physical, cfg.embedding.dimension)
            phys.ensure_collection()
            phys.finish()  # restores the indexing ensure_collection deferred on a server
            phys.set_metadata(record_of(cfg, alias).to_meta())
        if create_alias and alias is not None:
            store.create_alias(alias, physical)
            say(f"collection {physical!r} created behind alias {alias!r}")
    finally:
        store.close()
    qdrant = dataclasses.replace(cfg.qdrant, collection=physical, physical_collection=None)
    return dataclasses.replace(cfg, qdrant=qdrant)


def _follow_keywords(cfg: C, held: str | None, physical: str, say: Say) -> C:
    """``cfg`` writing keyword vectors exactly when the collection has a keyword vector (so a
    collection made without them is unaffected by a use case that now turns them on)."""
    if held is None and cfg.keywords.enabled:
        say(
            f"collection {physical!r} was made without keyword vectors: writing without them "
            "(hybrid search needs a collection made with keywords.enabled=true)"
        )
        return dataclasses.replace(cfg, keywords=dataclasses.replace(cfg.keywords, enabled=False))
    if held is not None and (not cfg.keywords.enabled or cfg.keywords.vector_name != held):
        say(f"collection {physical!r} keeps keyword vectors ({held!r}): writing them too")
        return dataclasses.replace(
            cfg, keywords=dataclasses.replace(cfg.keywords, enabled=True, vector_name=held)
        )
    return cfg


def _follow(cfg: C, held: Recorded, physical: str, alias: str | None, say: Say) -> C:
    """``cfg`` with the vector parameters ``held`` records, or a ConfigError (see
    :func:`aim_collection`). The query purpose stays the run's (it never reaches the index)."""
    mine = fingerprints_of(cfg.embedding, cfg.segmentation, cfg.usecase.modalities)
    theirs = fingerprints_of(held.embedding, held.segmentation, cfg.usecase.modalities)
    if same_vectors(mine, theirs):
        return cfg
    emb = dataclasses.replace(held.embedding, query_purpose=cfg.embedding.query_purpose)
    changes = parameter_changes(emb, held.segmentation, cfg.embedding, cfg.segmentation)
    where = f"collection {physical!r}" + (f" (alias {alias!r})" if alias else "")
    if cfg.parameters_from == "config":
        raise ConfigError(
            "embedding",
            f"{where} was built with {overrides(changes, 0)}; this run has "
            f"{overrides(changes, 1)}: add {overrides(changes, 0)} to the command, or migrate "
            "the alias to the new parameters (python -m jobs.migrate, docs/migrations.md)",
        )
    say(
        f"{where} was built with {overrides(changes, 0)}: writing with them "
        f"(the config says {overrides(changes, 1)}; parameters_from=config refuses instead)"
    )
    return dataclasses.replace(cfg, embedding=emb, segmentation=held.segmentation)


def record_if_missing(cfg: BackfillJobConfig) -> None:
    """After a run that ended done: a collection without a record (made by an earlier version)
    gets one, with the parameters the run just wrote with (the journal checked they are the
    collection's)."""
    store = open_store(cfg.qdrant, cfg.embedding, cfg.segmentation)
    store.open()
    try:
        if store.exists() and Recorded.of(store.metadata()) is None:
            pointing = sorted(a for a, c in store.aliases().items() if c == store.collection)
            store.set_metadata(record_of(cfg, pointing[0] if pointing else None).to_meta())
    finally:
        store.close()

"""What a Matryoshka migration copies of the journal (``pipelines.migrate._copy_journal``)."""

from __future__ import annotations

from pathlib import Path

from pipelines.config.compose import compose_migrate
from pipelines.core.journal import Entry, Journal
from pipelines.migrate import _copy_journal, _key


def test_points_kept_partial_or_whole_carry_the_new_fingerprint(tmp_path: Path) -> None:
    # A partial asset's points are copied like an embedded one's: its entry must say they were
    # made under the new fingerprint, or the next backfill would embed it again.
    cfg = compose_migrate([f"state.path={tmp_path}", "qdrant.collection=docs"])
    old, new = _key(cfg, "docs_v1"), _key(cfg, "docs_v2")
    journal = Journal(tmp_path)
    journal.record(
        old,
        "r1",
        [
            Entry("whole", "v1", "text", "fp-old", "embedded", points=3),
            Entry("part", "v1", "document", "fp-old", "partial", "validation_exception", True, 2),
            Entry("failed", "v1", "text", "fp-old", "dead_lettered", "empty_text", True, 0),
        ],
    )
    journal.close()

    copied = _copy_journal(
        cfg, "docs_v1", "docs_v2", {"text": "fp-new", "document": "fp-new"}, "r2"
    )

    journal = Journal(tmp_path)
    try:
        got = {e.asset_id: e for chunk in journal.entries(new) for e in chunk}
    finally:
        journal.close()
    assert copied == 3
    assert got["whole"].fingerprint == got["part"].fingerprint == "fp-new"
    assert (got["part"].outcome, got["part"].points, got["part"].permanent) == ("partial", 2, True)
    # A dead letter has no points to copy: its fingerprint says what it failed under.
    assert got["failed"].fingerprint == "fp-old"


def test_the_points_check_compares_counts_of_whole_assets_only(tmp_path: Path) -> None:
    # An asset partial in the old collection (one page refused) and whole in the new one (the
    # page embedded this time) holds more points in the new: that is not a mismatch.
    import types
    import uuid

    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.core.rows import STORED_POINT
    from pipelines.migrate import _points_check
    from pipelines.stores import open_store

    manifest = tmp_path / "manifest.parquet"
    pq.write_table(pa.table({"asset_id": ["whole", "part"]}), manifest)
    cfg = compose_migrate(
        [
            f"state.path={tmp_path / 'state'}",
            f"qdrant.path={tmp_path / 'qdrant'}",
            "qdrant.collection=docs",
            f"manifest={manifest}",
            "embedding.dimension=256",
        ]
    )

    def points(asset: str, n: int) -> list[dict[str, object]]:
        return [
            {
                "point_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{asset}/{i}")),
                "asset_id": asset,
                "segment_index": i,
                "embedding_type": None,
                "vector": [1.0] + [0.0] * 255,
                "payload_json": f'{{"asset_id": "{asset}", "segment_index": {i}}}',
            }
            for i in range(n)
        ]

    store = open_store(cfg.qdrant, cfg.embedding, cfg.segmentation)
    store.open()
    try:
        for name, part in (("docs_v1", 2), ("docs_v2", 3)):
            target = store.for_collection(name, 256)
            target.ensure_collection()
            target.put_points(STORED_POINT.table(points("whole", 2) + points("part", part)))
        journal = Journal(cfg.state.path)
        journal.record(
            _key(cfg, "docs_v1"),
            "r1",
            [
                Entry("whole", "v1", "text", "fp", "embedded", points=2),
                Entry("part", "v1", "document", "fp", "partial", "validation_exception", True, 2),
            ],
        )
        journal.record(
            _key(cfg, "docs_v2"),
            "r2",
            [
                Entry("whole", "v1", "text", "fp", "embedded", points=2),
                Entry("part", "v1", "document", "fp", "embedded", points=3),
            ],
        )
        journal.close()
        held = types.SimpleNamespace(segmentation=cfg.segmentation, embedding=cfg.embedding)
        check = _points_check(cfg, store, "docs_v1", "docs_v2", held)  # type: ignore[arg-type]
    finally:
        store.close()
    assert check["assets"] == 2 and check["missing"] == 0
    assert check["mismatched"] == 0 and check["ok"], check

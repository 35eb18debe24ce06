"""Cutting the asset table into decode tasks."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from pipelines.core.plan import MAX_BLOCK_WORK, asset_blocks


def _table(rows: list[dict[str, object]]) -> pa.Table:
    return pa.Table.from_pylist(
        [{"asset_id": str(i), "text": None, **r} for i, r in enumerate(rows)],
        schema=pa.schema(
            [
                ("asset_id", pa.string()),
                ("uri", pa.string()),
                ("modality", pa.string()),
                ("text", pa.string()),
            ]
        ),
    )


def test_every_row_lands_in_exactly_one_block_in_order(tmp_path: Path) -> None:
    files = []
    for i in range(40):
        p = tmp_path / f"{i}.jpg"
        p.write_bytes(b"x" * (1000 + i))
        files.append({"uri": str(p), "modality": "image"})
    table = _table(files)
    blocks = asset_blocks(table, cpus=2)
    assert sum(b.num_rows for b in blocks) == 40
    assert pa.concat_tables(blocks)["asset_id"].to_pylist() == table["asset_id"].to_pylist()
    # Enough blocks for every CPU, but several small assets share a task.
    assert 8 <= len(blocks) < 40


def test_blocks_shrink_towards_the_end_so_the_last_round_is_short(tmp_path: Path) -> None:
    files = []
    for i in range(36):
        p = tmp_path / f"{i}.pdf"
        p.write_bytes(b"x" * 100_000)
        files.append({"uri": str(p), "modality": "document"})
    sizes = [b.num_rows for b in asset_blocks(_table(files), cpus=2)]
    assert sum(sizes) == 36
    # The first takes about a quarter of the work (2 CPUs x factor 2), then each block a quarter
    # of what is left: few task boundaries, and single assets at the end.
    assert sizes[0] == 9
    assert sizes == sorted(sizes, reverse=True)
    assert sizes[-2:] == [1, 1]
    assert len(sizes) <= 12


def test_unknown_sizes_and_big_assets_get_their_own_block(tmp_path: Path) -> None:
    big = tmp_path / "big.mp4"
    with open(big, "wb") as fh:
        fh.truncate(MAX_BLOCK_WORK * 2)
    small = tmp_path / "s.jpg"
    small.write_bytes(b"x" * 100)
    table = _table(
        [
            {"uri": str(small), "modality": "image"},
            {"uri": "s3://bucket/clip.mp4", "modality": "video"},
            {"uri": str(big), "modality": "video"},
            {"uri": str(small), "modality": "image"},
        ]
    )
    sizes = [b.num_rows for b in asset_blocks(table, cpus=1)]
    assert sum(sizes) == 4
    ids = [b["uri"].to_pylist() for b in asset_blocks(table, cpus=1)]
    assert ["s3://bucket/clip.mp4"] in ids
    # A big asset closes its block: nothing queues behind it in the same task.
    assert any(b[-1] == str(big) for b in ids)

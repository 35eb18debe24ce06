"""Cutting the asset table into decode tasks."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from pipelines.core.plan import MAX_ASSETS_PER_BLOCK, MAX_BLOCK_WORK, asset_blocks


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


def _big_pdf_corpus(tmp_path: Path) -> pa.Table:
    """One 'PDF' holding most of the work, then small ones (sizes only: nothing is opened)."""
    rows = []
    for i, size in enumerate([64 * 2**20, *[2 * 2**20] * 8]):
        p = tmp_path / f"{i}.pdf"
        with open(p, "wb") as fh:
            fh.truncate(size)
        rows.append({"uri": str(p), "modality": "document"})
    return _table(rows)


def test_a_large_pdf_is_split_into_page_range_parts_that_cover_it_once(tmp_path: Path) -> None:
    from pipelines.config.schema import SegmentationConfig

    table = _big_pdf_corpus(tmp_path)
    blocks = asset_blocks(table, cpus=2, seg=SegmentationConfig(pdf_mode="image"))
    out = pa.concat_tables(blocks)
    parts: dict[str, list[str | None]] = {}
    for a, p in zip(out["asset_id"].to_pylist(), out["part"].to_pylist(), strict=True):
        parts.setdefault(a, []).append(p)
    # Every asset is there; a split one as parts 0/n .. n-1/n, each once and in order.
    assert sorted(parts) == sorted(table["asset_id"].to_pylist())
    for labels in parts.values():
        n = len(labels)
        assert labels == ([None] if n == 1 else [f"{k}/{n}" for k in range(n)])
    # The large one (a quarter of the work would be one task) goes to several decode tasks.
    assert len(parts["0"]) >= 4
    assert sum(1 for b in blocks if "0" in b["asset_id"].to_pylist()) == len(parts["0"])
    # Small assets early on stay whole (the goal is still large).
    assert parts["1"] == [None]


def test_no_split_without_local_segmentation_or_when_pages_go_as_text(tmp_path: Path) -> None:
    from pipelines.config.schema import SegmentationConfig

    table = _big_pdf_corpus(tmp_path)
    for seg in (None, SegmentationConfig(pdf_mode="auto"), SegmentationConfig(pdf_mode="text")):
        out = pa.concat_tables(asset_blocks(table, cpus=2, seg=seg))
        assert out["asset_id"].to_pylist() == table["asset_id"].to_pylist()
        assert out["part"].null_count == out.num_rows


def test_part_segments_are_contiguous_disjoint_and_cover_every_count() -> None:
    from pipelines.modalities.base import part_segments

    for n in range(1, 7):
        for count in range(0, 20):
            got = [list(part_segments({"part": f"{i}/{n}"}, count)) for i in range(n)]
            assert [x for r in got for x in r] == list(range(count))
            if count:
                assert got[0]  # the first part speaks for the asset
    assert list(part_segments({"part": None}, 3)) == [0, 1, 2]


def test_many_small_inline_texts_share_few_blocks() -> None:
    # A task costs Ray about the same whatever its rows: 10,000 short texts are a handful of
    # tasks (enough for every CPU), not one task per few hundred texts.
    table = _table([{"modality": "text", "text": f"text number {i}"} for i in range(10_000)])
    blocks = asset_blocks(table, cpus=2)
    assert sum(b.num_rows for b in blocks) == 10_000
    assert 4 <= len(blocks) <= 50
    assert 1000 < max(b.num_rows for b in blocks) <= MAX_ASSETS_PER_BLOCK


def test_a_parquet_source_reads_windows_bounded_by_rows_and_by_bytes(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from pipelines.core.rows import ASSET
    from pipelines.core.runner import ParquetSource

    texts = [("x" * (10 if i < 500 else 2000)) for i in range(1000)]
    rows = [{"asset_id": f"a{i}", "modality": "text", "text": t} for i, t in enumerate(texts)]
    path = tmp_path / "todo.parquet"
    pq.write_table(ASSET.table(rows), path, row_group_size=100)

    by_rows = list(ParquetSource(ASSET, path, window_rows=300).windows(2))
    assert [sum(b.num_rows for b in w) for w in by_rows] == [300, 300, 300, 100]
    # Long texts: the byte cap closes windows well before the row cap.
    by_bytes = list(
        ParquetSource(ASSET, path, window_rows=10_000, window_bytes=200_000, read_rows=50).windows(
            2
        )
    )
    sizes = [sum(b.num_rows for b in w) for w in by_bytes]
    assert sizes == [600, 100, 100, 100, 100]
    got = [a for w in by_bytes for b in w for a in b["asset_id"].to_pylist()]
    assert got == [f"a{i}" for i in range(1000)]

    # Assets cut one per block (sizes unknown): a window holds at most window_blocks of them.
    def one_per_row(table: pa.Table, cpus: int) -> list[pa.Table]:
        return [table.slice(i, 1) for i in range(table.num_rows)]

    by_blocks = list(
        ParquetSource(ASSET, path, cut=one_per_row, window_rows=300, window_blocks=128).windows(2)
    )
    assert [len(w) for w in by_blocks] == [128, 128, 44] * 3 + [100]
    got = [a for w in by_blocks for b in w for a in b["asset_id"].to_pylist()]
    assert got == [f"a{i}" for i in range(1000)]

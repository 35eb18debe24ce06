"""The keyword encoder (stable, normalised, saturated) and the evaluation's figures on
hand-made rankings (exact values)."""

from __future__ import annotations

import math

import pytest

from pipelines.evaluate import Query, breakdown, score_ranked
from pipelines.keywords import encode_document, encode_query, token_index, tokens
from pipelines.search import peak_offset


def test_tokens_are_normalised_and_indices_stable() -> None:
    assert tokens("\uff26\uff55\uff4c\uff4c-width CAFÉ, café; part XK-42!") == [
        "full", "width", "café", "café", "part", "xk", "42",
    ]  # fmt: skip
    # CRC-32 of the UTF-8 bytes: the same index in every process and on every machine.
    assert token_index("café") == 2561491637
    doc = encode_document("lava lava lava flows")
    assert doc.indices == sorted(doc.indices) and len(doc.indices) == 2
    values = dict(zip(doc.indices, doc.values, strict=True))
    assert values[token_index("flows")] == pytest.approx(1.0)
    assert values[token_index("lava")] == pytest.approx(3 * 2.2 / (3 + 1.2))
    assert encode_query("Lava lava").values == [1.0]
    assert not encode_query("  ,;  ")


def test_recall_mrr_ndcg_exact() -> None:
    queries = [
        Query("a", ["x"], text="q"),
        Query("b", ["x", "y"], uri="clip.mp4", kind="clip"),
        Query("c", ["z"], text="q"),
    ]
    ranked = [["x", "p"], ["p", "y", "q", "x"], ["p", "q"]]
    m = score_ranked(queries, ranked, k=3)
    assert m.recall_at_k == pytest.approx((1 + 0.5 + 0) / 3)
    assert m.mrr == pytest.approx((1 + 0.5 + 0) / 3)
    ideal_b = 1 + 1 / math.log2(3)
    assert m.ndcg == pytest.approx((1 + (1 / math.log2(3)) / ideal_b + 0) / 3)
    assert m.missed == ["c"]
    by = breakdown(queries, ranked, 3, lambda q: q.modality)
    assert set(by) == {"text", "video"} and by["video"].queries == 1
    assert by["text"].mrr == pytest.approx(0.5)


def test_peak_offset_interpolates_between_windows() -> None:
    # Windows every 5 s; the excerpt starts at 7.5 s: windows 5 and 10 score alike.
    profile = {0.0: 0.80, 5.0: 0.95, 10.0: 0.95, 15.0: 0.80}
    assert peak_offset(profile, 5.0) == pytest.approx(7.5)
    # A clear peak stays on its window; a shift never passes half a hop.
    assert peak_offset({0.0: 0.5, 5.0: 0.99, 10.0: 0.5}, 5.0) == pytest.approx(5.0)
    assert 2.5 <= peak_offset({0.0: 0.1, 5.0: 0.99, 10.0: 0.98}, 5.0) <= 7.5
    # At the track's start the missing neighbour counts as the lowest score.
    assert peak_offset({0.0: 0.99, 5.0: 0.97, 10.0: 0.6}, 0.0) > 1.0

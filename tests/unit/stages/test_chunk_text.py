"""chunk_text spans and the text decoder, on generated articles and edge cases."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from nova_devkit.media import TOPICS, article_topic, make_article
from pipelines.config.schema import EmbeddingConfig, SegmentationConfig
from pipelines.core.rows import SEGMENT_COLUMNS
from pipelines.stages._decode_common import decoded_rows
from pipelines.stages.chunk_text import chunk_text, decode_text

EMB = EmbeddingConfig()


def _check_spans(text: str, spans: list[tuple[int, int]], max_chars: int, overlap: int) -> None:
    """The invariants every chunking must keep."""
    covered = [False] * len(text)
    for i, (start, end) in enumerate(spans):
        assert 0 <= start < end <= len(text)
        assert end - start <= max_chars
        assert not text[start].isspace() and not text[end - 1].isspace()
        for k in range(start, end):
            covered[k] = True
        if i:
            prev_start, prev_end = spans[i - 1]
            assert start > prev_start, "no progress"
            assert end > prev_end
            if start < prev_end:
                assert prev_end - start <= overlap, "overlap larger than asked"
            else:
                assert text[prev_end:start].strip() == "", "non-whitespace text skipped"
    assert all(covered[k] for k, ch in enumerate(text) if not ch.isspace())


ARTICLE = "\n\n".join(make_article(seed, paragraphs=4) for seed in range(6))


@pytest.mark.parametrize(
    ("max_chars", "overlap"), [(6000, 600), (800, 100), (300, 0), (120, 40), (50, 49), (7, 3)]
)
def test_article_spans_keep_invariants(max_chars: int, overlap: int) -> None:
    spans = chunk_text(ARTICLE, max_chars, overlap)
    _check_spans(ARTICLE, spans, max_chars, overlap)


def test_cuts_prefer_sentence_ends_and_honour_overlap() -> None:
    spans = chunk_text(ARTICLE, 400, 80)
    assert len(spans) > 10
    # Most chunks end at a sentence end (the article is all sentences under 400 chars).
    ends = [ARTICLE[e - 1] for _, e in spans[:-1]]
    assert sum(ch in ".!?:" for ch in ends) >= 0.9 * len(ends)
    # Overlap is real (up to a word shorter than asked) and starts at a word start.
    overlaps = [spans[i][1] - spans[i + 1][0] for i in range(len(spans) - 1)]
    assert all(0 < o <= 80 for o in overlaps)
    assert all(ARTICLE[s - 1].isspace() for s, _ in spans[1:])


def test_text_without_whitespace_is_cut_hard_and_progresses() -> None:
    text = "x" * 1000
    spans = chunk_text(text, 100, 10)
    _check_spans(text, spans, 100, 10)
    assert all(e - s == 100 for s, e in spans[:-1])
    assert spans[1][0] == 90  # the overlap is honoured even in a hard cut
    assert spans[-1][1] == 1000


def test_random_texts_keep_invariants() -> None:
    rng = random.Random(7)
    alphabet = "ab cd\n.é漢字 \t!?"
    for _ in range(200):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 400)))
        max_chars = rng.randint(1, 120)
        overlap = rng.randint(0, max_chars - 1)
        _check_spans(text, chunk_text(text, max_chars, overlap), max_chars, overlap)


@pytest.mark.parametrize("text", ["", "   ", "\n\t \n"])
def test_blank_text_has_no_spans(text: str) -> None:
    assert chunk_text(text, 10, 2) == []


def test_short_text_is_one_stripped_span() -> None:
    assert chunk_text("  hello world \n", 100, 10) == [(2, 13)]


@pytest.mark.parametrize(("max_chars", "overlap"), [(0, 0), (10, 10), (10, -1), (10, 11)])
def test_invalid_sizes_are_refused(max_chars: int, overlap: int) -> None:
    with pytest.raises(ValueError):
        chunk_text("some text", max_chars, overlap)


# --- decode_text --------------------------------------------------------------------------------


def _asset(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {"asset_id": "t1", "uri": None, "modality": "text", "text": None}
    base.update(kw)
    return base


def _decoded(
    asset: dict[str, object], seg: SegmentationConfig | None = None
) -> list[dict[str, Any]]:
    """The text decoder's rows as the decode stage emits them (errors as dead-letter rows)."""
    return list(decoded_rows(asset, decode_text(asset, seg or SegmentationConfig(), EMB)))


def _codes(rows: list[dict[str, object]]) -> list[object]:
    return [r["error_code"] for r in rows]


def test_inline_text_becomes_text_segments() -> None:
    text = make_article(3, paragraphs=8)
    seg = SegmentationConfig(text_max_chars=500, text_overlap_chars=50)
    rows = _decoded(_asset(text=text), seg)
    assert len(rows) > 3
    for i, row in enumerate(rows):
        assert set(row) == set(SEGMENT_COLUMNS)
        assert row["error_code"] is None
        assert row["input_kind"] == "text"
        assert (row["segment_index"], row["segment_count"]) == (i, len(rows))
        assert row["input_text"] == text[row["char_start"] : row["char_end"]]
        assert len(row["input_text"]) <= 500
        assert "text" not in row or row.get("text") is None
    # Topic words survive (what retrieval by topic relies on).
    vocab = TOPICS[article_topic(3)][1]
    assert any(w in rows[0]["input_text"] for w in vocab)


def test_file_text_utf8_bom_and_file_uri(tmp_path: Path) -> None:
    text = "Ünïcödé text. " * 20
    path = tmp_path / "a.txt"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    rows = _decoded(_asset(uri=path.as_uri()))
    assert _codes(rows) == [None]
    assert rows[0]["input_text"] == text.strip()
    assert rows[0]["char_start"] == 0


def test_file_text_utf16_and_cp1252(tmp_path: Path) -> None:
    utf16 = tmp_path / "u16.txt"
    utf16.write_bytes("naïve café résumé".encode("utf-16"))
    cp = tmp_path / "cp.txt"
    cp.write_bytes("naïve café résumé “quoted” — dash".encode("cp1252"))
    (r16,) = _decoded(_asset(uri=str(utf16)))
    (rcp,) = _decoded(_asset(uri=str(cp)))
    assert r16["input_text"] == "naïve café résumé"
    assert rcp["input_text"] == "naïve café résumé “quoted” — dash"


def test_inline_text_wins_over_uri(tmp_path: Path) -> None:
    path = tmp_path / "other.txt"
    path.write_text("from the file")
    (row,) = _decoded(_asset(uri=str(path), text="inline words"))
    assert row["input_text"] == "inline words"


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"", "empty_file"),
        (b" \n\t \n", "empty_text"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200), "text_binary"),
        (bytes(range(1, 9)) * 50, "text_binary"),
        (b"\x81\x8d\x8f\x90\x9d" * 100, "text_not_utf8"),
    ],
)
def test_bad_text_files_are_dead_letters(tmp_path: Path, content: bytes, code: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    rows = _decoded(_asset(uri=str(path)))
    assert _codes(rows) == [code]
    assert rows[0]["error_stage"] == "decode"
    assert rows[0]["input_text"] is None


def test_missing_inputs_are_dead_letters(tmp_path: Path) -> None:
    assert _codes(_decoded(_asset())) == ["missing_uri"]
    assert _codes(_decoded(_asset(text="  "))) == ["empty_text"]
    gone = str(tmp_path / "nope.txt")
    assert _codes(_decoded(_asset(uri=gone))) == ["file_not_found"]


def test_mostly_utf8_with_a_stray_byte_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "stray.txt"
    path.write_bytes(("héllo wörld " * 200).encode() + b"\xff")
    (row,) = _decoded(_asset(uri=str(path)))
    assert row["error_code"] is None
    assert str(row["input_text"]).startswith("héllo wörld")


def test_make_article_is_deterministic_and_on_topic() -> None:
    assert make_article(5) == make_article(5)
    assert make_article(5) != make_article(5 + len(TOPICS))
    for seed in range(len(TOPICS)):
        words = set(make_article(seed).lower().replace(".", " ").split())
        own = set(TOPICS[article_topic(seed)][1])
        others = set().union(*(v for t, (_, v) in TOPICS.items() if t != article_topic(seed)))
        assert len(words & own) >= 10
        assert not words & others


def test_html_files_are_embedded_by_their_visible_text(tmp_path: Path) -> None:
    page = (
        "<!DOCTYPE html><html><head><title>T</title><style>p {color: red}</style>"
        "<script>var secret = 1;</script></head><body><h1>Head&amp;line</h1>"
        "<p>First&nbsp;para <b>bold</b></p><!-- note --><ul><li>a</li><li>b</li></ul>"
        "</body></html>"
    )
    for name in ("page.html", "page.txt"):  # by extension, or by its doctype
        path = tmp_path / name
        path.write_text(page)
        [row] = _decoded(_asset(uri=str(path)))
        assert row["input_text"] == "T\n\nHead&line\n\nFirst para bold\n\na\n\nb"
    md = tmp_path / "notes.md"
    md.write_text("# Title\n\n<b>kept</b> as written\n")
    [row] = _decoded(_asset(uri=str(md)))
    assert row["input_text"] == "# Title\n\n<b>kept</b> as written"


def test_inline_text_is_cut_in_the_task_process_and_files_in_a_decoder_process(
    tmp_path: Path,
) -> None:
    """decode.isolate: a file goes to the decoder process; an inline text, which only needs
    cutting, does not pay a pipe round trip for it."""
    from pipelines.config.schema import DecodeConfig
    from pipelines.core.rows import ASSET
    from pipelines.stages import decode_isolated
    from pipelines.stages.decode import DecodeStage

    note = tmp_path / "note.txt"
    note.write_text("a note kept in a file")
    stage = DecodeStage(SegmentationConfig(), EmbeddingConfig(), decode=DecodeConfig(isolate=True))
    inline = {"asset_id": "inline", "uri": None, "modality": "text", "text": "an inline note"}
    try:
        rows = [r for t in stage.process(ASSET.table([inline])) for r in t.to_pylist()]
        assert [(r["asset_id"], r["input_text"]) for r in rows] == [("inline", "an inline note")]
        assert not decode_isolated._PROCESSES
        filed = {"asset_id": "file", "uri": str(note), "modality": "text", "text": None}
        rows = [r for t in stage.process(ASSET.table([filed])) for r in t.to_pylist()]
        assert [(r["asset_id"], r["input_text"]) for r in rows] == [("file", note.read_text())]
        assert len(decode_isolated._PROCESSES) == 1
    finally:
        for proc in decode_isolated._PROCESSES.values():
            proc.close()
        decode_isolated._PROCESSES.clear()

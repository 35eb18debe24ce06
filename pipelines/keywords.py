"""Sparse keyword vectors for hybrid search, computed locally (no model, no download).

A text is normalised (Unicode NFKC, case-folded), cut into word tokens (``\\w+``, so digits and
codes such as ``xk-42`` give ``xk`` and ``42``), and each distinct token is hashed (CRC-32 of its
UTF-8 bytes, stable across processes and machines) to an index of the 32-bit space Qdrant's
sparse vectors use. Collisions in 2^32 buckets are negligible for any vocabulary a corpus has.

Values:

- a **document** (a stored text segment) carries each token's term frequency saturated as BM25
  does (``tf * (k1 + 1) / (tf + k1)``, ``k1 = 1.2``, no length normalisation: the average length
  is not known when an incremental run writes one asset);
- a **query** carries 1.0 per distinct token.

The inverse document frequency is **not** stored: the collection's sparse vector is created with
Qdrant's IDF modifier, which weighs each query token by the collection's statistics at query
time, so incremental runs, deletions and migrations never leave stale statistics behind. The
score of a point is then ``sum over shared tokens of idf(token) * saturated_tf``, BM25 without
length normalisation.

The scheme is versioned (:data:`SCHEME`) and recorded with the collection
(:mod:`pipelines.collections`), so a later search encodes its query the way the points were.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections import Counter
from dataclasses import dataclass

SCHEME = "crc32-words-v1"
K1 = 1.2
_TOKEN = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class SparseTerms:
    """A sparse vector: sorted distinct indices and their values."""

    indices: list[int]
    values: list[float]

    def __bool__(self) -> bool:
        return bool(self.indices)


def tokens(text: str) -> list[str]:
    """The normalised word tokens of ``text``, in order."""
    return _TOKEN.findall(unicodedata.normalize("NFKC", text).casefold())


def token_index(token: str) -> int:
    """The sparse index of a normalised token."""
    return zlib.crc32(token.encode("utf-8"))


def _terms(counts: Counter[int], value: dict[int, float]) -> SparseTerms:
    indices = sorted(counts)
    return SparseTerms(indices, [value[i] for i in indices])


def encode_document(text: str) -> SparseTerms:
    """The stored sparse vector of a text segment (empty for a text without words)."""
    counts = Counter(token_index(t) for t in tokens(text))
    return _terms(counts, {i: tf * (K1 + 1) / (tf + K1) for i, tf in counts.items()})


def encode_query(text: str) -> SparseTerms:
    """The sparse query vector of ``text``: 1.0 per distinct token."""
    counts = Counter(token_index(t) for t in tokens(text))
    return _terms(counts, dict.fromkeys(counts, 1.0))

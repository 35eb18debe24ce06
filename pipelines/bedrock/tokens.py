"""Token estimates, used to plan against tokens-per-minute quotas before a call is made.

Bedrock reports input tokens for text in the ``X-Amzn-Bedrock-Input-Token-Count`` header; for
other modalities no count is public. These estimates are deliberately simple and conservative;
the embed stage corrects its budget with the header's value when the service sends one. The local
endpoint counts tokens with the same functions so that benchmarks are self-consistent.
"""

from __future__ import annotations

import math

# About four characters a token for English text (a common rule of thumb, not the tokenizer).
CHARS_PER_TOKEN = 4.0
# Flat estimates for media (no public figure; configurable quotas absorb the error).
IMAGE_TOKENS = 1000
MEDIA_TOKENS_PER_SECOND = 100
TEXT_MAX_TOKENS = 8192


def text_tokens(n_chars: int) -> int:
    """Estimated tokens for ``n_chars`` characters of text (at least 1)."""
    return max(1, math.ceil(n_chars / CHARS_PER_TOKEN))


def media_tokens(seconds: float | None = None) -> int:
    """Estimated tokens for ``seconds`` of audio or video (30 s, the most, when unknown)."""
    return max(1, math.ceil((seconds if seconds is not None else 30.0) * MEDIA_TOKENS_PER_SECOND))

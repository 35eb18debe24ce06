"""Test and demo helpers: media generated at run time, deterministic by seed.

Documents, images and text articles are in :mod:`nova_devkit.media.docs` (re-exported here).
"""

from nova_devkit.media.docs import (
    EXIF_QUADRANTS,
    TOPIC_NAMES,
    TOPICS,
    article_topic,
    make_article,
    make_bomb_png,
    make_encrypted_pdf,
    make_exif_rotated_jpeg,
    make_near_duplicate,
    make_pdf,
    make_product_photo,
    make_truncated_file,
    make_zero_page_pdf,
)

__all__ = [
    "EXIF_QUADRANTS",
    "TOPICS",
    "TOPIC_NAMES",
    "article_topic",
    "make_article",
    "make_bomb_png",
    "make_encrypted_pdf",
    "make_exif_rotated_jpeg",
    "make_near_duplicate",
    "make_pdf",
    "make_product_photo",
    "make_truncated_file",
    "make_zero_page_pdf",
]

"""Every config file composes against the typed schema, and bad values fail naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException

from pipelines.config.compose import CONF_DIR, compose_backfill
from pipelines.config.schema import BackfillJobConfig
from pipelines.config.validate import validate_backfill
from pipelines.core.errors import ConfigError

CONF = CONF_DIR
USECASES = sorted(p.stem for p in (CONF / "usecase").glob("*.yaml"))
GROUPS = {
    g: sorted(p.stem for p in (CONF / g).glob("*.yaml")) for g in ("bedrock", "qdrant", "ray")
}


def _compose(overrides: list[str]) -> BackfillJobConfig:
    return compose_backfill(overrides)


def test_the_six_use_cases_exist() -> None:
    assert set(USECASES) >= {
        "product_search",
        "document_retrieval",
        "text_retrieval",
        "video_clip_search",
        "audio_fingerprinting",
        "mixed_media",
    }


@pytest.mark.parametrize("usecase", USECASES)
def test_every_usecase_composes_and_validates(usecase: str) -> None:
    cfg = _compose([f"usecase={usecase}", "manifest=m.parquet"])
    validate_backfill(cfg)
    assert cfg.usecase.name == usecase
    assert cfg.qdrant.collection == usecase


@pytest.mark.parametrize(
    "usecase,purpose,dimension",
    [
        ("product_search", "IMAGE_RETRIEVAL", 1024),
        ("document_retrieval", "DOCUMENT_RETRIEVAL", 3072),
        ("text_retrieval", "TEXT_RETRIEVAL", 1024),
        ("video_clip_search", "VIDEO_RETRIEVAL", 1024),
        ("audio_fingerprinting", "AUDIO_RETRIEVAL", 1024),
        ("mixed_media", "GENERIC_RETRIEVAL", 1024),
    ],
)
def test_usecase_parameters_follow_the_seed(usecase: str, purpose: str, dimension: int) -> None:
    cfg = _compose([f"usecase={usecase}", "manifest=m.parquet"])
    assert cfg.embedding.index_purpose == "GENERIC_INDEX"
    assert cfg.embedding.query_purpose == purpose
    assert cfg.embedding.dimension == dimension


@pytest.mark.parametrize("group,option", [(g, o) for g, opts in GROUPS.items() for o in opts])
def test_every_group_option_composes(group: str, option: str) -> None:
    cfg = _compose([f"{group}={option}", "manifest=m.parquet"])
    validate_backfill(cfg)


def test_any_key_is_overridable_on_the_command_line() -> None:
    cfg = _compose(
        [
            "usecase=product_search",
            "manifest=s3://b/m.parquet",
            "embedding.dimension=256",
            "bedrock.quota.requests_per_minute=50",
            "qdrant.collection=other",
        ]
    )
    assert cfg.embedding.dimension == 256
    assert cfg.bedrock.quota.requests_per_minute == 50
    assert cfg.qdrant.collection == "other"


def test_unknown_key_and_wrong_type_fail_at_composition() -> None:
    with pytest.raises(ConfigCompositionException, match=r"embedding\.dimensio"):
        _compose(["embedding.dimensio=5"])
    with pytest.raises(ConfigCompositionException, match=r"embedding\.dimension"):
        _compose(["embedding.dimension=abc"])


@pytest.mark.parametrize(
    "override,key",
    [
        ("embedding.dimension=512", "embedding.dimension"),
        ("embedding.query_purpose=SEARCH", "embedding.query_purpose"),
        ("embedding.video_embedding_mode=BOTH", "embedding.video_embedding_mode"),
        ("segmentation.audio_window_s=45", "segmentation.audio_window_s"),
        ("segmentation.pdf_mode=ocr", "segmentation.pdf_mode"),
        ("resources.embed.num_cpus=2", "resources.embed.num_cpus"),
        ("resources.decode.concurrency=0", "resources.decode.concurrency"),
        ("resources.embed.max_in_flight=0", "resources.embed.max_in_flight"),
        ("bedrock.endpoint_url=localhost:8765", "bedrock.endpoint_url"),
        ("qdrant.batch_size=0", "qdrant.batch_size"),
        ("segmentation.mode=service", "bedrock.s3_staging_uri"),
        ("usecase.partial_assets=some", "usecase.partial_assets"),
    ],
)
def test_bad_values_fail_before_work_naming_the_key(override: str, key: str) -> None:
    cfg = _compose(["manifest=m.parquet", override])
    with pytest.raises(ConfigError) as info:
        validate_backfill(cfg)
    assert info.value.key == key


def test_missing_manifest_names_the_key() -> None:
    cfg = _compose([])
    with pytest.raises(ConfigError) as info:
        validate_backfill(cfg)
    assert info.value.key == "manifest"


def test_server_and_embedded_are_exclusive() -> None:
    cfg = _compose(["manifest=m.parquet", "qdrant.url=http://q:6333"])
    with pytest.raises(ConfigError) as info:
        validate_backfill(cfg)
    assert info.value.key == "qdrant.url"


def test_composes_inside_another_hydra_app_and_leaves_it_intact(tmp_path: Path) -> None:
    # The demo composes backfills from inside its own app, whose search path has no job configs.
    (tmp_path / "other.yaml").write_text("answer: 42\n")
    with initialize_config_dir(config_dir=str(tmp_path), version_base=None):
        cfg = _compose(["usecase=text_retrieval", "manifest=m.parquet"])
        assert cfg.usecase.name == "text_retrieval"
        assert GlobalHydra.instance().is_initialized()
        assert compose("other").answer == 42
    assert not GlobalHydra.instance().is_initialized()


def test_migrate_composes_with_its_own_keys() -> None:
    from pipelines.config.compose import compose_migrate
    from pipelines.config.validate import validate_migrate

    cfg = compose_migrate(
        ["usecase=document_retrieval", "manifest=m.parquet", "alias=docs", "strategy=matryoshka"]
    )
    validate_migrate(cfg)
    assert cfg.alias == "docs" and cfg.strategy == "matryoshka"
    assert cfg.embedding.dimension == 3072 and cfg.validation.k == 10


@pytest.mark.parametrize(
    "override,key",
    [
        ("strategy=shrink", "strategy"),
        ("matryoshka.sample_size=1", "matryoshka.sample_size"),
        ("matryoshka.tolerance=0", "matryoshka.tolerance"),
        ("validation.k=0", "validation.k"),
        ("validation.max_recall_drop=2", "validation.max_recall_drop"),
        ("qdrant.physical_collection=docs_v9", "qdrant.physical_collection"),
        ("parameters_from=both", "parameters_from"),
    ],
)
def test_bad_migrate_values_name_their_key(override: str, key: str) -> None:
    from pipelines.config.compose import compose_migrate
    from pipelines.config.validate import validate_migrate

    cfg = compose_migrate(["usecase=text_retrieval", "manifest=m.parquet", override])
    with pytest.raises(ConfigError) as info:
        validate_migrate(cfg)
    assert info.value.key == key


@pytest.mark.parametrize("usecase", USECASES)
def test_search_and_evaluate_compose_for_every_usecase(usecase: str) -> None:
    from pipelines.config.compose import compose_evaluate, compose_search

    cfg = compose_search([f"usecase={usecase}", "query.text=x", "filter.metadata.sku=SKU-1"])
    assert cfg.usecase.name == usecase and cfg.query.text == "x"
    assert cfg.filter == {"metadata": {"sku": "SKU-1"}}
    assert cfg.keywords.enabled == (usecase == "text_retrieval")
    ev = compose_evaluate([f"usecase={usecase}", "queries=q.parquet", "k=5"])
    assert ev.k == 5 and ev.embedding.query_purpose == cfg.embedding.query_purpose


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("search.mode=fuzzy", "search.mode"),
        ("search.fusion=max", "search.fusion"),
        ("top_k=0", "top_k"),
        ("format=xml", "format"),
        ("search.weights.image=-1", "search.weights.image"),
        ("query.image=/no/such.jpg", "query.image"),
        ("group_by=", "group_by"),
    ],
)
def test_bad_search_values_name_their_key(override: str, key: str) -> None:
    from pipelines.config.compose import compose_search
    from pipelines.search import validate_search

    cfg = compose_search(["usecase=text_retrieval", "query.text=x", override])
    with pytest.raises(ConfigError) as info:
        validate_search(cfg)
    assert info.value.key == key


def test_keyword_modes_need_text() -> None:
    from pipelines.config.compose import compose_search
    from pipelines.search import validate_search

    cfg = compose_search(["usecase=text_retrieval", "search.mode=hybrid"])
    with pytest.raises(ConfigError) as info:
        validate_search(cfg)
    assert info.value.key == "query"

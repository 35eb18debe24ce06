"""Typed configuration schemas.

Hydra composes YAML from ``pipelines/conf/`` against these dataclasses (registered in a
ConfigStore by :mod:`pipelines.config.store`), so a wrong type or an unknown key fails at
composition, before any work. Only these plain dataclasses travel to Ray workers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

NOVA_MME_MODEL_ID = "amazon.nova-2-multimodal-embeddings-v1:0"


@dataclass
class EmbeddingConfig:
    """What is asked of the model: the use case's embedding parameters."""

    model_id: str = NOVA_MME_MODEL_ID
    # Purpose used when indexing (always GENERIC_INDEX for retrieval use cases) and when querying.
    index_purpose: str = "GENERIC_INDEX"
    query_purpose: str = "GENERIC_RETRIEVAL"
    dimension: int = 1024
    # detailLevel for plain images, and for PDF pages rendered to images.
    image_detail_level: str = "STANDARD_IMAGE"
    document_detail_level: str = "DOCUMENT_IMAGE"
    video_embedding_mode: str = "AUDIO_VIDEO_COMBINED"
    text_truncation_mode: str = "END"


@dataclass
class SegmentationConfig:
    """How assets are cut into segments before embedding."""

    # local: our CPU workers cut the media; service: Bedrock's async SEGMENTED_EMBEDDING does it.
    mode: str = "local"
    # Text chunking (characters). The documented inline limit is 8,192 characters.
    text_max_chars: int = 6000
    text_overlap_chars: int = 600
    # PDF: "image" renders pages (DOCUMENT_IMAGE), "text" extracts and chunks the text layer,
    # "auto" picks text for text-born pages and images otherwise.
    pdf_mode: str = "image"
    pdf_dpi: int = 150
    pdf_max_pixels: int = 4_000_000
    # Images: longest side cap, and the decompression-bomb limit in pixels.
    image_max_side: int = 2048
    image_max_pixels: int = 89_478_485
    # Multi-page TIFF: embed the "first" page (one point per file) or "all" pages (one point each,
    # placed by ``page``).
    tiff_pages: str = "first"
    # Audio / video windows (seconds); the sync API accepts at most 30 s.
    audio_window_s: float = 30.0
    audio_overlap_s: float = 0.0
    audio_format: str = "mp3"
    video_window_s: float = 30.0
    video_overlap_s: float = 0.0
    # Re-encode video when keyframes are too sparse for stream copy: "auto" | "always" | "never".
    video_reencode: str = "auto"
    video_max_height: int = 480
    # Service segmentation (async): seconds per segment (1..30) and chars per text segment.
    service_duration_s: int = 5
    service_max_chars: int = 32000


@dataclass
class QuotaConfig:
    """The account's Bedrock quota the pipeline plans for (shared by every embed actor)."""

    requests_per_minute: float = 600.0
    tokens_per_minute: float = 1_000_000.0
    # Service segmentation's own quotas: StartAsyncInvoke requests/min and async jobs in progress
    # at once (over it Bedrock answers ServiceQuotaExceededException).
    async_requests_per_minute: float = 60.0
    async_max_concurrent_jobs: int = 20
    # Batch inference (bedrock.mode=batch): CreateModelInvocationJob jobs submitted and not yet
    # ended at once, per account and model (a Service Quotas value: check yours).
    batch_max_concurrent_jobs: int = 10
    # Whose quota this is: the guard is shared by every job naming the same account (or, when
    # unset, the account STS names against AWS, or the endpoint's address for another endpoint),
    # region and model. See docs/rate-control.md.
    account: str | None = None
    # How long any call to the guard may take before the run stops as an infrastructure failure
    # (exit 3): a guard that neither answers nor can be restarted never lets calls go unpaced.
    guard_timeout_s: float = 60.0


@dataclass
class BatchConfig:
    """Batch inference (``bedrock.mode=batch``): records staged as JSONL in S3, one
    ``CreateModelInvocationJob`` per group, results read back (see ``docs/batch-inference.md``).

    The service's limits are quotas per account and model whose values for this model are
    uncertain: every one is configurable, the defaults are the values commonly documented.
    """

    # The IAM role Bedrock assumes to read the inputs and write the outputs (required).
    role_arn: str | None = None
    # A job needs at least this many records (the service refuses fewer); records of a run too
    # few for a job go on-demand in the same run.
    min_records_per_job: int = 100
    max_records_per_job: int = 50_000
    # One input file holds at most this many records and bytes (1 GiB).
    max_records_per_file: int = 50_000
    max_bytes_per_file: int = 1_073_741_824
    # Job-level timeout the service enforces (24..168 hours); an unfinished job ends Expired.
    timeout_hours: int = 24
    # How long a run waits for its jobs before it exits pending (0: submit and exit); the next
    # run, or the same command, collects them.
    wait_s: float = 0.0
    # Poll interval bounds while waiting (full-jitter backoff between them).
    poll_min_s: float = 5.0
    poll_max_s: float = 60.0
    # Records a job did not embed (per-record errors, or a job that ended PartiallyCompleted,
    # Failed, Stopped or Expired): "dead_letter" them, or retry their assets once "on_demand".
    on_failed_records: str = "dead_letter"


@dataclass
class BedrockConfig:
    """How to reach Bedrock Runtime (AWS when ``endpoint_url`` is unset)."""

    region: str = "us-east-1"
    endpoint_url: str | None = None
    # S3 endpoint for staging and async outputs (moto locally); unset = AWS.
    s3_endpoint_url: str | None = None
    # Where async segmentation stages inputs and writes outputs: s3://bucket/prefix
    s3_staging_uri: str | None = None
    quota: QuotaConfig = field(default_factory=QuotaConfig)
    # Retries of one request (throttles and transient errors), paced by the pipeline, not botocore.
    max_attempts: int = 8
    base_backoff_s: float = 0.5
    max_backoff_s: float = 20.0
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 120.0
    # Async jobs: poll interval bounds (seconds) and overall timeout.
    async_poll_min_s: float = 0.5
    async_poll_max_s: float = 15.0
    async_timeout_s: float = 3600.0
    # http:// to an endpoint that is not on this machine sends session tokens and every input in
    # clear; refused unless this is set (see docs/reliability.md).
    allow_insecure_endpoint: bool = False
    # on_demand: InvokeModel per segment; batch: CreateModelInvocationJob (docs/batch-inference.md).
    mode: str = "on_demand"
    batch: BatchConfig = field(default_factory=BatchConfig)


@dataclass
class CollectionSettingsConfig:
    """How a new collection is laid out for its corpus (``qdrant.collection_settings``): applied
    when the collection is created, never to an existing one. See ``docs/qdrant-sizing.md``.

    The defaults suit a small corpus held in RAM; the use cases that expect large corpora set
    theirs in ``pipelines/conf/usecase/``. The embedded store keeps these settings with the
    collection but searches exactly (no HNSW, no quantization, one shard)."""

    # Original vectors memory-mapped from disk instead of held in RAM.
    vectors_on_disk: bool = False
    # The HNSW graph on disk too (slower search, far less RAM).
    hnsw_on_disk: bool = False
    # HNSW edges per node and build-time beam (Qdrant's defaults: 16 and 100).
    hnsw_m: int = 16
    hnsw_ef_construct: int = 100
    # none | scalar (int8: 4x smaller) | binary (1 bit: 32x smaller; for >= 1024 dimensions).
    quantization: str = "none"
    # Keep the quantized vectors in RAM (the point of quantizing with vectors on disk).
    quantization_always_ram: bool = True
    # At search: re-score the quantized candidates with the original vectors, over
    # ``oversampling`` times the asked limit.
    rescore: bool = True
    oversampling: float = 2.0
    # Server only (null: the server's defaults, 1 shard and 1 replica).
    shard_number: int | None = None
    replication_factor: int | None = None


@dataclass
class QdrantConfig:
    """Where vectors go: a server by ``url`` or the embedded local store at ``path``."""

    url: str | None = None
    path: str | None = ".qdrant"
    # The name searchers and runs use: an alias of a versioned physical collection
    # (``<collection>_v1``, ``_v2``, ...; see docs/migrations.md).
    collection: str = "nova"
    # Write to this physical collection instead of the one the alias points to (set by
    # ``jobs.migrate`` to build the next version; null: the alias's).
    physical_collection: str | None = None
    # Points per upsert (Qdrant guidance: 64-256).
    batch_size: int = 128
    # Server only: false acknowledges an upsert once the server has it in its write-ahead log,
    # not once it is applied, so writers do not wait on indexing. Safe here: point ids are
    # deterministic (a retried upsert overwrites), finish() waits until every shard has applied
    # what it took (a filtered delete with wait=true, ordered after the upserts on each shard),
    # and the run's exact per-asset count check follows. The embedded store always applies
    # at once.
    wait_writes: bool = True
    prefer_grpc: bool = False
    timeout_s: float = 60.0
    on_disk_payload: bool = False
    # Defer HNSW indexing during big loads on a server (indexing_threshold=0, restored after).
    defer_indexing: bool = True
    # With QDRANT_API_KEY set, an http:// url that is not on this machine is refused (the key
    # would travel in clear) unless this is set.
    allow_insecure_api_key: bool = False
    # Layout of a collection this job creates (vectors/HNSW on disk, quantization, shards).
    collection_settings: CollectionSettingsConfig = field(default_factory=CollectionSettingsConfig)


@dataclass
class RayConfig:
    """Where the job runs: a local Ray (address unset) or a cluster (``auto`` or ``ray://``)."""

    address: str | None = None
    num_cpus: int | None = None
    log_to_driver: bool = False
    # Show Ray's own INFO lines, core worker messages and Ray Data's progress bars (hidden by
    # default: the job's console shows the run's progress).
    verbose: bool = False


@dataclass
class StageResourcesConfig:
    """Compute for one stage, apart from its arguments (see ``pipelines/core/stage.py``)."""

    # Logical CPUs per task or actor.
    num_cpus: float = 1.0
    # Tasks at once (task stages) or actors in the pool (actor stages); None: as many as fit.
    concurrency: int | None = None
    # Requests in flight inside one actor (I/O stages).
    max_in_flight: int = 1


@dataclass
class ResourcesConfig:
    """Per-stage resources. On 2 CPUs two decode tasks (0.75 each) and two embed actors (0.25
    each) fit at once; I/O actors that asked for a whole CPU would starve the decode tasks.

    ``embed.max_in_flight`` is also the rows of one decode output block and of one embed call:
    Ray Data costs about the same per block whatever its rows, so 32 rather than 8 took the
    whole pipeline's CPU from 1.97x to 1.65x the plain loop on 1,320 PDF pages, and 64 rather
    than 32 took 3,990 pages from 131.0 to 123.2 CPU-s and 77.7 to 72.2 s of wall
    (``benchmarks/bench_pipeline.py``)."""

    decode: StageResourcesConfig = field(
        default_factory=lambda: StageResourcesConfig(num_cpus=0.75)
    )
    embed: StageResourcesConfig = field(
        default_factory=lambda: StageResourcesConfig(num_cpus=0.25, concurrency=2, max_in_flight=64)
    )
    # Parallel writers against a Qdrant server; the embedded store is written by the driver.
    write: StageResourcesConfig = field(
        default_factory=lambda: StageResourcesConfig(num_cpus=0.25, concurrency=2)
    )


@dataclass
class BatchPricesConfig:
    """Batch inference prices (USD). Reported at about half the on-demand price for text; no
    batch price was found for images, video or audio (assumed half too: uncertain)."""

    text_per_1k_tokens: float = 0.0000675
    image_each: float = 0.00003
    video_per_second: float = 0.00035
    audio_per_second: float = 0.00007


@dataclass
class PricesConfig:
    """On-demand prices (USD) used for cost estimates, and the batch table (``prices.batch``);
    keep them in config, not code."""

    text_per_1k_tokens: float = 0.000135
    image_each: float = 0.00006
    video_per_second: float = 0.0007
    audio_per_second: float = 0.00014
    batch: BatchPricesConfig = field(default_factory=BatchPricesConfig)

    def for_batch(self) -> PricesConfig:
        """The batch table as a price table the modalities' cost rules read."""
        b = self.batch
        return PricesConfig(
            b.text_per_1k_tokens, b.image_each, b.video_per_second, b.audio_per_second, b
        )


@dataclass
class UseCaseConfig:
    """A named use case: which modalities it takes, how it embeds and segments them."""

    name: str = "mixed_media"
    description: str = ""
    modalities: list[str] = field(
        default_factory=lambda: ["text", "image", "document", "audio", "video"]
    )
    # An asset some of whose segments failed: "drop" dead-letters it whole and removes the points
    # it wrote (all-or-nothing); "keep" keeps the segments that were written (outcome "partial")
    # and dead-letters the failed ones. See docs/reliability.md.
    partial_assets: str = "drop"


@dataclass
class StateConfig:
    """Where the journal of a collection's runs lives (see ``docs/scheduled-backfills.md``)."""

    # A folder on the driver's machine (a persistent volume on a cluster); the journal is
    # ``<path>/journal.sqlite``, one file for every collection written from this place.
    path: str = ".state"
    # A lock older than this without a heartbeat belongs to a run that died: taken over.
    lock_stale_after_s: float = 120.0


@dataclass
class LimitsConfig:
    """What a run may spend, what one asset may cost, and what makes a finished run fail."""

    # Exit 5 when more than this fraction of the rows to embed ended dead-lettered (None: never).
    max_dead_letter_fraction: float | None = None
    # Run limits: the run stops cleanly (exit 4, status "stopped") instead of making the call
    # that would pass either; the next run resumes. Calls are Bedrock attempts (the preflight's
    # test call is not counted); dollars follow ``prices`` and each modality's cost rule.
    max_calls: int | None = None
    max_usd: float | None = None
    # Per-asset limits: an asset over any of them is dead-lettered before any call for it.
    max_pages_per_asset: int | None = None
    max_media_seconds_per_asset: float | None = None
    max_segments_per_asset: int | None = None
    max_bytes_per_asset: int | None = None
    # Seconds from the run's start after which throttled calls stop waiting: a throttling storm
    # (or a used-up service quota) is waited out until then, and a segment still throttled at
    # the deadline is dead-lettered as throttling_exception (transient: the next run retries).
    run_deadline_s: float = 21600.0


@dataclass
class DecodeConfig:
    """How each asset is decoded: in a worker process of its decode task, within limits, so that
    a crash, a memory blow-up or a hang in native decoder code fails that asset alone."""

    # Decode in a separate process per decode task (false: in the task's own process, where a
    # native crash takes the whole block down; for debugging).
    isolate: bool = True
    # One asset's decode may take this long (seconds) before it is stopped (decode_timeout).
    timeout_s: float = 900.0
    # One asset's decoder process may use this much memory (MiB) above its start (resident
    # size, and its data segment as a hard limit) before it is stopped (decode_out_of_memory).
    memory_limit_mb: int = 4096
    # Decode a large asset in parts (PDF page ranges, audio/video time ranges) on several tasks at
    # once, so that one asset does not bound the run (pipelines/core/plan.py); false: whole.
    split: bool = True


@dataclass
class InputsConfig:
    """Where a job may read its inputs (see ``docs/reliability.md``)."""

    # Folders local files must lie under, after symlinks and ``..`` are resolved (relative
    # entries from the current folder). Empty: the manifest's own folder (none for a manifest on
    # S3). Relative uris in the manifest are always taken from the manifest's folder.
    allowed_roots: list[str] = field(default_factory=list)
    # s3://bucket[/prefix] entries s3:// uris must fall in. Empty: any object the job can read.
    allowed_s3_prefixes: list[str] = field(default_factory=list)


@dataclass
class KeywordsConfig:
    """Sparse keyword vectors stored beside the dense ones, for hybrid search of text
    (``pipelines/keywords.py``; docs/search-and-evaluation.md). Off by default: a use case turns
    it on, and a collection records whether it holds them (later runs follow the collection)."""

    enabled: bool = False
    # The named sparse vector of the collection (the dense vector stays unnamed).
    vector_name: str = "keywords"


@dataclass
class BackfillJobConfig:
    """``python -m jobs.backfill``: the whole job's configuration."""

    usecase: UseCaseConfig = field(default_factory=UseCaseConfig)
    manifest: str | None = None
    run_dir: str = "runs"
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig)
    bedrock: BedrockConfig = field(default_factory=BedrockConfig)
    qdrant: QdrantConfig = field(default_factory=QdrantConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    prices: PricesConfig = field(default_factory=PricesConfig)
    inputs: InputsConfig = field(default_factory=InputsConfig)
    # Stop early for smoke runs: at most this many manifest rows (None = all).
    limit: int | None = None
    state: StateConfig = field(default_factory=StateConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    keywords: KeywordsConfig = field(default_factory=KeywordsConfig)
    # Delete the points of assets that are in the journal but no longer in the manifest.
    prune: bool = False
    # Embed again the unchanged assets that failed for a permanent reason last time.
    retry_dead_letters: bool = False
    # Estimate instead of running: plan, decode and count without calling Bedrock or writing
    # (python -m jobs.estimate sets it); plan_only: plan without decoding. See docs/estimates.md.
    dry_run: bool = False
    plan_only: bool = False
    # Check a sample of (or, with verify=true, every) asset the journal says is embedded against
    # the collection's points and payloads, and repair what differs by embedding it again.
    verify: bool = False
    # Vector parameters of a run into a collection that records its own (docs/migrations.md):
    # "collection" writes with the collection's (saying so when the config differs), "config"
    # stops before any work when they differ, naming the keys to change.
    parameters_from: str = "collection"


@dataclass
class MatryoshkaConfig:
    """``strategy=matryoshka``: stored vectors truncated and renormalised, after a check."""

    # Bedrock calls the agreement check may make (its preflight call included): assets of the
    # old collection, spread over it, are embedded at the new dimension up to this many points.
    sample_size: int = 32
    # Every sampled pair (truncated old vector, real new vector) must have a cosine of at least
    # 1 - tolerance.
    tolerance: float = 0.02


@dataclass
class ValidationConfig:
    """What a migration checks before it switches the alias (thresholds included)."""

    # A Parquet of queries: ``text`` (a text query) or ``uri`` (a media file), and ``asset_ids``
    # (a list of the asset ids it should find). Null: queries sampled from the manifest, each
    # asset's own content (its first segment) having to find it.
    queries: str | None = None
    # Assets sampled from the manifest when ``queries`` is null (0: no retrieval check).
    sample_queries: int = 20
    # Hits per query (distinct assets) for recall@k and MRR.
    k: int = 10
    # The switch needs new recall@k >= old recall@k - max_recall_drop (same for MRR).
    max_recall_drop: float = 0.02
    max_mrr_drop: float = 0.05
    # Vectors whose L2 norm is further than this from 1 count as bad.
    norm_tolerance: float = 0.001


@dataclass
class MigrateJobConfig(BackfillJobConfig):
    """``python -m jobs.migrate``: a backfill's configuration plus the migration's own keys."""

    # The alias to migrate (default: qdrant.collection).
    alias: str | None = None
    # reembed: the backfill machinery builds the next collection from the manifest;
    # matryoshka: only the dimension shrinks, stored vectors are truncated and renormalised.
    strategy: str = "reembed"
    matryoshka: MatryoshkaConfig = field(default_factory=MatryoshkaConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    # Point the alias back at the collection the last migration switched from.
    rollback: bool = False
    # Put a collection made by an earlier version under the plain name behind an alias of that
    # name (copied to <name>_v1, checked, the plain one dropped).
    adopt: bool = False


@dataclass
class QueryConfig:
    """``jobs.search``: the query's parts (any of them; several are fused)."""

    text: str | None = None
    # Files: a picture, a sound excerpt, a video clip (at most 30 s: one synchronous call each).
    image: str | None = None
    audio: str | None = None
    video: str | None = None


@dataclass
class QueryWeightsConfig:
    """Each part's weight in ``search.fusion=weighted`` (``keywords``: the text's keyword part in
    hybrid mode)."""

    text: float = 1.0
    image: float = 1.0
    audio: float = 1.0
    video: float = 1.0
    keywords: float = 1.0


@dataclass
class SearchSettingsConfig:
    """How a query is matched (docs/search-and-evaluation.md)."""

    # dense: the model's vectors; sparse: the text's keywords against the collection's keyword
    # vectors (IDF applied by Qdrant); hybrid: both, fused.
    mode: str = "dense"
    # rrf: reciprocal rank fusion of the parts; weighted: the same with weights.
    fusion: str = "rrf"
    weights: QueryWeightsConfig = field(default_factory=QueryWeightsConfig)
    # Candidates each part brings to the fusion (Qdrant prefetch limit).
    candidates: int = 100
    # With group_by: the best points shown per group (pages or segments of one asset).
    group_size: int = 3


@dataclass
class QueryJobConfig:
    """What ``jobs.search`` and ``jobs.evaluate`` share: the use case (its query purpose), where
    the collection is and how to reach Bedrock."""

    usecase: UseCaseConfig = field(default_factory=UseCaseConfig)
    run_dir: str = "runs"
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig)
    bedrock: BedrockConfig = field(default_factory=BedrockConfig)
    qdrant: QdrantConfig = field(default_factory=QdrantConfig)
    keywords: KeywordsConfig = field(default_factory=KeywordsConfig)
    search: SearchSettingsConfig = field(default_factory=SearchSettingsConfig)
    # Payload conditions every hit meets: filter.<field>=value (metadata.<key> for the
    # manifest's metadata).
    filter: dict[str, Any] = field(default_factory=dict)


@dataclass
class SearchJobConfig(QueryJobConfig):
    """``python -m jobs.search``."""

    query: QueryConfig = field(default_factory=QueryConfig)
    top_k: int = 10
    # asset (each asset once, with its best segments) or any payload field; null: points.
    group_by: str | None = None
    # table: for people; json: one array of hits on stdout.
    format: str = "table"


@dataclass
class EvaluateJobConfig(QueryJobConfig):
    """``python -m jobs.evaluate``: retrieval quality of a collection on a query set."""

    # A Parquet of queries: text or uri, asset_ids (what each should find), optional kind.
    queries: str | None = None
    # Distinct assets per query for recall@k, MRR and nDCG.
    k: int = 10
    # Where evaluation.json and evaluation.png go (null: runs/<usecase>/evaluate-<run id>).
    out_dir: str | None = None


# -- analytics (docs/analytics.md) ----------------------------------------------------------------


@dataclass
class AnalyticsJobConfig:
    """What the analytics jobs share: the use case, the collection (``qdrant.collection``: an
    alias or a name), Ray, and where the run folder goes."""

    usecase: UseCaseConfig = field(default_factory=UseCaseConfig)
    run_dir: str = "runs"
    # The run folder (null: runs/<usecase>/<job>-<run id>).
    out_dir: str | None = None
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig)
    bedrock: BedrockConfig = field(default_factory=BedrockConfig)
    qdrant: QdrantConfig = field(default_factory=QdrantConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    # Points per block scanned from the store: one Ray task's share of the vectors.
    scan_batch: int = 512


@dataclass
class ClassifyJobConfig(AnalyticsJobConfig):
    """``python -m jobs.classify``: labels for new assets by a similarity-weighted vote of their
    top-K labelled neighbours."""

    # The assets to label (a manifest: asset_id, uri or text, optional label to measure).
    manifest: str | None = None
    # Labelled neighbours (distinct assets) per vote.
    k: int = 5
    # The payload field holding the neighbours' labels.
    label_field: str = "label"
    # Assets embedded per Ray task.
    embed_batch: int = 16


@dataclass
class DuplicateThresholdsConfig:
    """Cosine similarity at or above which two assets of a modality are near-duplicates (the
    defaults separate planted copies from distinct assets on the local endpoint's vectors:
    docs/analytics.md; calibrate them on a sample of your own corpus for Nova's)."""

    text: float = 0.85
    image: float = 0.93
    document: float = 0.95
    audio: float = 0.97
    video: float = 0.93


@dataclass
class DuplicatesJobConfig(AnalyticsJobConfig):
    """``python -m jobs.duplicates``: near-duplicate groups over a collection."""

    thresholds: DuplicateThresholdsConfig = field(default_factory=DuplicateThresholdsConfig)
    # Two assets with several segments (pages, windows) are near-duplicates when the segments
    # that match cover at least this share of either of them.
    min_coverage: float = 0.5


@dataclass
class ClusterJobConfig(AnalyticsJobConfig):
    """``python -m jobs.cluster``: topic clusters over a collection's vectors."""

    # The number of clusters (null: estimated by the silhouette over the sample).
    clusters: int | None = None
    # The range the estimate tries.
    min_clusters: int = 2
    max_clusters: int = 12
    # Vectors sampled (reservoir) to seed and estimate; every vector is assigned.
    sample: int = 2000
    # Refinement passes over every vector (Lloyd's, on Ray); stops early when centres settle.
    iterations: int = 20
    # Members listed per cluster (nearest to its centre).
    representatives: int = 3
    seed: int = 0


@dataclass
class McpJobConfig(QueryJobConfig):
    """``python -m jobs.mcp``: the search tools served over MCP (stdio)."""

    # Hits per search unless the caller asks for another number.
    top_k: int = 10
    # Most hits a caller may ask for.
    max_top_k: int = 100

"""The sections of the settings: each layer takes the one it needs (`settings.storage`, `settings.limits`, ...)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator

from serve_app.models.layout import HF_MODEL_ID

TINY_MODEL = "tiny"
SEQUENCE_PARALLEL_SIZES = (1, 2, 4, 8)  # divide the DiT's 24 heads; a node has at most 8 GPUs


class _Section(BaseModel):
    model_config = ConfigDict(extra="ignore", protected_namespaces=())


class ModelSettings(_Section):
    """What to load, where, and how a replica starts."""

    backend: Literal["auto", "diffusers", "fastvideo"] = Field(
        "auto", description="auto: fastvideo on a GPU when installed, else diffusers")
    model: str = Field(
        "auto", description=f"HF id, local folder, or '{TINY_MODEL}'. auto: {HF_MODEL_ID} on a GPU, tiny on CPU")
    served_model_name: str = Field("FastWan2.2-TI2V-5B", description="name clients send as `model`")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: cuda when the node has a GPU")
    tiny_model_dir: Path = Field(Path("models/tiny"), description="where the tiny model is built on demand")
    model_links_dir: Path = Field(Path("models/links"),
                                  description="where a model folder gets the name FastVideo needs (a symlink)")
    cpu_threads: int | None = Field(None, ge=1, description="torch threads on CPU (default: all cores)")
    generator_resources: dict[str, float] = Field(
        default_factory=dict, description="custom Ray resources a generator replica needs, e.g. {\"gpu_node\": 1} "
                                          "to keep replicas on nodes started with that resource (docs/scaling.md)")
    selfcheck: bool = Field(True, description="run one small generation at start-up before reporting ready "
                                              "(with ready_after_warmup, the warm-up is the check)")
    warmup: bool = Field(
        True, description="after the self-check, make one text- and one image-to-video of the default size, so "
                          "torch.compile and cuDNN tuning are done before the first request (FastVideo backend)")
    ready_after_warmup: bool = Field(
        True, description="/ready turns 200 only once a replica has warmed up (serves at full speed); false: as "
                          "soon as it passed its self-check (the first requests then wait for the warm-up)")

    @property
    def uses_tiny_model(self) -> bool:
        return self.model == TINY_MODEL


class ReplicaPool(BaseModel):
    """Generator replicas of one width: one Serve deployment of `num_replicas`, each over `gpus_per_replica` GPUs."""

    model_config = ConfigDict(extra="forbid")

    gpus_per_replica: int = Field(1, description="GPUs each replica of this pool spreads a video over")
    num_replicas: int = Field(1, ge=1, le=64, description="replicas in this pool")

    @field_validator("gpus_per_replica")
    @classmethod
    def _heads_split_evenly(cls, value: int) -> int:
        if value not in SEQUENCE_PARALLEL_SIZES:
            raise ValueError(f"gpus_per_replica must be one of {SEQUENCE_PARALLEL_SIZES}: the DiT's 24 attention "
                             f"heads are split evenly across a replica's GPUs and its GPUs sit on one node")
        return value


class FastVideoSettings(_Section):
    """The FastVideo backend on a GPU (docs/gpu.md)."""

    fastvideo_executor: Literal["ray", "mp"] = Field(
        "ray", description="FastVideo executor: ray needs no shared-memory IPC (containers without --ipc=host)")
    gpus_per_replica: int = Field(
        1, description="GPUs one generator replica spreads each video over (FastVideo's sequence parallelism: "
                       "the DiT split across them): 1, 2, 4 or 8 on one node; more: a faster video, fewer "
                       "replicas (docs/scaling.md)")
    replica_pools: list[ReplicaPool] = Field(
        default_factory=list, description="generator replicas of mixed widths behind one ingress, e.g. "
                                          "[{gpus_per_replica: 2, num_replicas: 1}, {gpus_per_replica: 1, "
                                          "num_replicas: 2}] on 4 GPUs: one deployment a pool (Generator, "
                                          "Generator-2, ...); each job goes to the pool that would finish it "
                                          "first. Empty: one pool of gpus_per_replica (docs/scaling.md)")
    attention_backend: str = Field(
        "auto", description="FASTVIDEO_ATTENTION_BACKEND (TORCH_SDPA, FLASH_ATTN, ...); auto: FastVideo's choice")
    attention_kernel: Literal["auto", "cudnn", "flash", "efficient", "torch-default"] = Field(
        "auto", description="torch SDPA kernel tried first (with TORCH_SDPA): auto times cuDNN, flash and efficient "
                            "at the DiT's own attention shape on this card at start and puts the fastest that runs "
                            "first; a named one is put first if it runs here (else auto, and the log says why)")
    memory_profile: Literal["auto", "speed", "fit-32gb"] = Field(
        "auto", description="speed: every model on the GPU; fit-32gb: the text encoder waits in CPU memory "
                            "(RTX 5090). auto: fit-32gb on cards of 40 GB or less, else speed")
    dit_cpu_offload: bool = Field(False, description="keep the DiT in CPU memory between uses (slow)")
    dit_layerwise_offload: bool = Field(False, description="stream DiT layers from CPU memory (slower, less VRAM)")
    text_encoder_cpu_offload: bool | None = Field(
        None, description="keep the 5.7B UMT5 text encoder in CPU memory; None: from memory_profile")
    vae_cpu_offload: bool = Field(False, description="keep the VAE in CPU memory between uses")
    pin_cpu_memory: bool = Field(True, description="pinned CPU memory for offloaded weights (faster copies)")
    text_encoder_precision: Literal["fp32", "bf16"] = Field(
        "bf16", description="UMT5 text encoder precision (bf16: half the memory, what Wan itself uses)")
    vae_precision: Literal["fp32", "bf16"] = Field("bf16", description="VAE weights and decode precision")
    speed_profile: Literal["quality", "fast"] = Field(
        "quality", description="fast (lossy): FP8 linears in the DiT and, with light_decoder_path, a light "
                               "decoder instead of the Wan VAE (docs/speed.md); quality: full precision")
    light_decoder_path: Path | None = Field(
        None, description="the fast profile's decoder: a Wan 2.2 light decoder checkpoint you supply (TAEHV's "
                          "taew2_2 layout); without it the fast profile decodes with the Wan VAE")
    torch_compile: bool = Field(
        True, description="torch.compile the DiT blocks (faster videos; each new video shape compiles once)")
    compile_cache_dir: Path = Field(
        Path("models/compile-cache"), description="where torch.compile keeps what it compiled (Inductor and Triton "
                                                  "caches): on a volume, a restart reaches full speed without "
                                                  "compiling again")
    cudnn_benchmark: bool = Field(
        False, description="cuDNN times its conv algorithms per shape (VAE): no faster decode on an H200, "
                           "seconds more at every start (docs/benchmarks.md, run 28)")
    vae_channels_last: bool = Field(True, description="VAE 3-D convs in channels-last (NDHWC) layout")
    vae_fused_kernels: bool = Field(
        True, description="Wan VAE: norm + SiLU in one compiled kernel, bf16 upsampling, padding inside the convs, "
                          "each upsampler as one 2x2 conv, shortcuts added as views (same output within bf16 "
                          "rounding)")
    vae_compile: bool = Field(
        True, description="with torch_compile: also compile the Wan VAE decoder's residual blocks (a faster "
                          "decode, same output within bf16 rounding; compiled at the warm-up, kept in the cache)")
    vae_compile_blocks: Literal["high-resolution", "all", "up-blocks"] = Field(
        "high-resolution", description="which decoder blocks vae_compile compiles: the residual blocks of the full- "
                                       "and half-resolution stages, all of them, or each up-block whole (more: a "
                                       "faster decode, a longer warm-up at every start)")
    early_vae: bool = Field(
        True, description="with the Ray executor: the GPU worker loads the VAE and warms it up while the replica "
                          "is still starting (about 10 s off each start); false: FastVideo loads it after the rest")
    encode_in_worker: bool = Field(
        True, description="FastVideo with the Ray executor: encode the MP4 in the GPU worker while the VAE decodes "
                          "(overlapped) and send only the MP4 back")
    gpu_memory_limit_gb: float | None = Field(
        None, gt=0, description="cap the GPU worker's memory (simulate a smaller card on a bigger one)")
    fastvideo_allow_untested: bool = Field(
        False, description="start with a FastVideo version this backend was not tested against (see docs/gpu.md)")

    @field_validator("gpus_per_replica")
    @classmethod
    def _heads_split_evenly(cls, value: int) -> int:
        return ReplicaPool(gpus_per_replica=value).gpus_per_replica

    def pools(self) -> list[ReplicaPool]:
        """The generator pools to deploy: `replica_pools`, or one pool of `gpus_per_replica`."""
        return self.replica_pools or [ReplicaPool(gpus_per_replica=self.gpus_per_replica)]


class GenerationSettings(_Section):
    """Defaults for what a request leaves out (None: the model's own, see Settings.resolve), and the MP4."""

    default_width: int | None = Field(None, description="None: 1280 (real model) or 256 (tiny)")
    default_height: int | None = Field(None, description="None: 704 (real model) or 256 (tiny)")
    default_num_frames: int | None = Field(None, description="None: 121 (real model) or 17 (tiny)")
    default_fps: int = Field(24, ge=1, le=60, description="frame rate of the MP4 when the request has none")
    default_steps: int | None = Field(None, description="None: 3 (FastWan's DMD schedule)")
    default_guidance_scale: float = Field(1.0, description="1.0: no classifier-free guidance (FastWan is distilled)")
    default_seed: int | None = Field(None, description="None: a random seed per job (reported back)")
    video_crf: int = Field(18, ge=0, le=51, description="H.264 quality (lower: better, larger)")
    video_preset: str = Field("veryfast", description="x264 preset (speed of the MP4 encode)")


class LimitsSettings(_Section):
    """What one request may ask for."""

    max_width: int = Field(1920, description="largest accepted width (multiple of 32)")
    max_height: int = Field(1920, description="largest accepted height (multiple of 32)")
    max_num_frames: int = Field(241, description="largest accepted frame count (4k+1)")
    max_steps: int = Field(100, description="largest accepted num_inference_steps")
    max_prompt_chars: int = Field(4000, description="longest accepted prompt / negative prompt")
    max_pixel_frames: int | None = Field(
        None, ge=1, description="largest width x height x frames one video may have (what must fit in the "
                                "replica's memory); None: from the device's memory (docs/reliability.md)")
    job_timeout_s: float | None = Field(
        None, gt=0, description="a job still generating after this long fails with `timeout` and its replica is "
                                "freed; None: 600 on a GPU, 1800 on CPU")
    image_max_bytes: int = Field(20 * 1024 * 1024, description="upload / download size cap")
    image_max_pixels: int = Field(40_000_000, description="decoded width x height cap")
    image_fetch_timeout_s: float = Field(15.0, description="time limit for downloading an image URL")
    image_url_allow_private: bool = Field(False, description="let image URLs reach private/loopback addresses")
    image_url_allowed_hosts: list[str] = Field(default_factory=list, description="hosts exempt from that check")


class HttpSettings(_Section):
    """The HTTP front: keys, body size, load shedding, long polls."""

    api_keys: list[SecretStr] = Field(
        default_factory=list, description="if set, every call but /health and /ready needs one of these, as "
                                          "`Authorization: Bearer <key>` or `Salad-Api-Key: <key>`")
    max_pending_jobs: int = Field(256, ge=1, description="queued + running jobs per ingress replica; then 429")
    max_request_bytes: int = Field(32 * 1024 * 1024, description="largest request body (uploads included)")
    max_wait_s: float = Field(90, ge=0, le=3600,
                              description="cap on `Prefer: wait=N` (Salad's gateway cuts requests at 100 s)")


class StorageSettings(_Section):
    """Where records, reference images and videos live, and how clients reach the videos."""

    storage_url: str = Field("file://./data", description="file://DIR or s3://bucket/prefix")
    s3_endpoint_url: str | None = Field(None, description="R2, B2, MinIO: the S3 API endpoint")
    s3_region: str | None = Field(None, description="S3 region (None: the AWS default chain)")
    s3_access_key_id: SecretStr | None = Field(None, description="S3 key id (None: the AWS default chain, e.g. "
                                                                 "AWS_ACCESS_KEY_ID)")
    s3_secret_access_key: SecretStr | None = Field(None, description="S3 secret key (None: the AWS default chain)")
    public_video_base_url: str | None = Field(
        None, description="a permanent public URL of the bucket (B2 `https://f005.backblazeb2.com/file/BUCKET`, an R2 "
                          "public bucket, a CDN): video links become BASE/OBJECT_NAME instead of presigned URLs")
    legacy_object_names: bool = Field(
        False, description="store /generate videos as `{prefix}/{musetalk_job_id}.mp4`, the old worker's names "
                           "(on by default when B2_BUCKET_NAME is set)")
    storage_single_writer: bool = Field(
        False, description="this storage ignores conditional writes (a start-up probe finds out) and only this one "
                           "ingress replica writes to it: make its create-if-absent atomic in-process instead")
    s3_timeout_s: float = Field(10.0, gt=0, description="S3 connect/read timeout per attempt")
    presign_expiry_s: int = Field(3600, ge=60, le=7 * 24 * 3600, description="lifetime of presigned video URLs")
    content_redirect: bool = Field(True, description="content endpoint redirects to a presigned URL (s3)")
    public_base_url: str | None = Field(None, description="base URL for links in /generate responses")
    job_ttl_s: int | None = Field(
        None, description="report expires_at = completed_at + this (match your bucket's lifecycle rule); "
                          "the service itself never deletes a video")

    @field_validator("storage_url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.startswith(("file://", "s3://")):
            raise ValueError("storage_url must start with file:// or s3://")
        return value


class ReliabilitySettings(_Section):
    """Retries, heartbeats, recovery of orphaned jobs, shutdown, webhooks."""

    max_attempts: int = Field(3, ge=1, le=10, description="tries per job when a generator replica dies mid-job")
    storage_retry_s: float = Field(30.0, ge=0, description="how long storage writes are retried with backoff")
    heartbeat_s: float = Field(10.0, gt=0, description="how often a running job's record is refreshed")
    stale_after_s: float = Field(60.0, gt=0, description="a job without heartbeat this long is adopted and rerun")
    recovery_interval_s: float = Field(30.0, gt=0, description="how often an ingress looks for orphaned jobs")
    drain_timeout_s: float = Field(55.0, ge=0, description="on SIGTERM, wait this long for running jobs")
    webhook_secret: SecretStr | None = Field(None, description="HMAC-SHA256 key for webhook signatures")
    webhook_attempts: int = Field(5, ge=1, le=20, description="webhook deliveries tried (backoff 1, 2, 4 ... s)")


class LegacySettings(_Section):
    """The old worker's modes, under the old worker's names, so existing deploys keep their env."""

    worker_mode: Literal["http", "queue", "buffer"] = Field(
        "http", validation_alias=AliasChoices("worker_mode", "WORKER_MODE", "FASTWAN_WORKER_MODE"),
        description="http: the API only; queue: Salad's job-queue worker feeds /generate (bad input answers 200 "
                    "with status failed, so Salad does not retry it); buffer: pull jobs from an orchestrator")
    orchestrator_base_url: str | None = Field(
        None, validation_alias=AliasChoices("orchestrator_base_url", "ORCHESTRATOR_BASE_URL"),
        description="buffer mode: the orchestrator's base URL")
    internal_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("internal_api_key", "INTERNAL_API_KEY"),
        description="buffer mode: sent as X-Internal-API-Key")
    buffer_worker_id: str | None = Field(
        None, validation_alias=AliasChoices("buffer_worker_id", "BUFFER_WORKER_ID"),
        description="buffer mode: this worker's id (default: SALAD_MACHINE_ID, else the host name)")
    gpu_class: str = Field("Unknown GPU", validation_alias=AliasChoices("gpu_class", "GPU_CLASS"),
                           description="buffer mode: reported in heartbeats")
    buffer_capacity: int = Field(1, ge=1, le=64, description="buffer mode: jobs claimed at once")
    buffer_heartbeat_s: float = Field(5.0, gt=0, description="buffer mode: heartbeat period")
    b2_key_id: str | None = Field(None, validation_alias=AliasChoices("b2_key_id", "B2_KEY_ID"),
                                  description="the old worker's Backblaze B2 storage: application key id")
    b2_app_key: SecretStr | None = Field(None, validation_alias=AliasChoices("b2_app_key", "B2_APP_KEY"),
                                         description="B2 application key")
    b2_bucket_name: str | None = Field(None, validation_alias=AliasChoices("b2_bucket_name", "B2_BUCKET_NAME"),
                                       description="B2 bucket: set with the two above, videos go to B2 under the old "
                                                   "names and links (docs/migration.md)")
    b2_prefix: str = Field("avatar/outputs", validation_alias=AliasChoices("b2_prefix", "B2_PREFIX"),
                           description="folder of the videos in the B2 bucket")
    b2_s3_endpoint: str | None = Field(None, validation_alias=AliasChoices("b2_s3_endpoint", "B2_S3_ENDPOINT"),
                                       description="B2's S3 endpoint (None: asked from B2 with the key at start)")
    b2_download_url: str | None = Field(None, validation_alias=AliasChoices("b2_download_url", "B2_DOWNLOAD_URL"),
                                        description="B2's download host, e.g. https://f005.backblazeb2.com (None: "
                                                    "asked from B2 at start)")
    b2_api_url: str = Field("https://api.backblazeb2.com", description="B2's native API, for that question")


class BatchingSettings(_Section):
    """Start values of the Ingress `user_config` (live values come from serve.yaml, see BatchConfig)."""

    max_batch_size: int = Field(4, ge=1, le=64, description="start value; live value: Ingress user_config")
    batch_wait_timeout_s: float = Field(0.0, ge=0, le=10, description="start value; live value: Ingress user_config")


SECTIONS: tuple[type[_Section], ...] = (ModelSettings, FastVideoSettings, GenerationSettings, LimitsSettings,
                                        HttpSettings, StorageSettings, ReliabilitySettings, LegacySettings,
                                        BatchingSettings)

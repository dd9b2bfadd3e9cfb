"""All service configuration, from ``METASERVE_*`` environment variables (documented defaults)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Service settings; every field is ``METASERVE_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="METASERVE_", extra="ignore")

    data_dir: Path = Field(Path("./var"), description="adapted-model artifacts and the SQLite file")
    database_url: str | None = Field(None, description="default: sqlite:///<data_dir>/metaserve.db")
    models_dir: Path = Field(Path("./models"), description="shipped meta-learners: the seed of the "
                             "catalog (published into the database at start-up)")
    admin_api_enabled: bool = Field(False, description="serve /v1/admin (publish, alias, retire, purge, "
                                    "history) to admin-scope API keys; off: those routes do not exist")
    console_enabled: bool = Field(True, description="serve the browser console at /console (static "
                                  "files; it calls this service's API with the key typed into it)")
    registry_poll_seconds: float = Field(2.0, gt=0, description="how often a replica or worker checks "
                                         "the catalog for published, aliased or retired versions")
    artifact_store: str = Field("local", pattern="^(local|s3)$", description="where adapted states "
                                "live: local (<data_dir>/artifacts) or s3 (any S3-compatible service)")
    inline_state_bytes: int = Field(16_384, ge=0, description="adapted states up to this size live in "
                                    "the database, written with their row's transaction, instead of "
                                    "the artifact store; 0 = none")
    s3_bucket: str = Field("metaserve", min_length=3, description="S3 bucket (created when missing)")
    s3_prefix: str = Field("", description="key prefix inside the bucket, e.g. prod/")
    s3_endpoint_url: str | None = Field(None, description="S3 endpoint; unset = AWS. Credentials: "
                                        "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (boto3's chain)")
    s3_region: str | None = Field(None, description="S3 region; unset = us-east-1")
    db_pool_size: int = Field(10, ge=1, description="database connections kept open (PostgreSQL, SQLite file)")
    db_max_overflow: int = Field(20, ge=0, description="extra connections under load")
    db_pool_timeout: float = Field(30.0, gt=0, description="seconds to wait for a free connection")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    otel_enabled: bool = Field(False, description="export OpenTelemetry traces over OTLP/HTTP "
                               "(OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME configure it)")
    log_level: str = Field("info", pattern="^(debug|info|warning|error)$")

    processes: int = Field(1, ge=1, le=64, description="server processes behind the one port "
                           "(each with its own worker threads, batcher and state cache)")
    workers: int = Field(2, ge=1, le=64, description="adaptation worker threads")
    prediction_workers: int = Field(1, ge=1, le=64, description="prediction worker threads (a pool "
                                    "of their own: predictions never wait behind adaptations)")
    max_adaptations_per_tenant: int = Field(0, ge=0, description="adaptations one tenant may run "
                                            "at once (429 beyond); 0 = no cap")
    torch_threads: int = Field(0, ge=0, description="PyTorch intra-op threads per worker; 0 = cores / workers")
    device: str = Field("cpu", pattern=r"^(cpu|cuda(:[0-9]+)?)$", description="where adaptation "
                        "and prediction run: cpu, or cuda / cuda:N (a GPU; start-up fails when "
                        "there is none). Stored states and the state cache stay in host memory")
    max_queue: int = Field(64, ge=1, description="queued + running jobs before 503")
    cache_bytes: int = Field(256 * 1024 * 1024, ge=0, description="in-memory adapted-state cache")
    malloc_trim_threshold_bytes: int = Field(
        128 * 1024 * 1024, ge=0, le=2**31 - 1,
        description="freed memory a thread's heap keeps for its next request (glibc; 0 = glibc's defaults)")
    batching: str = Field("auto", pattern="^(auto|on|off)$",
                          description="micro-batch concurrent requests per meta-learner")
    max_batch: int = Field(32, ge=1, description="requests per micro-batch")
    max_wait_ms: float = Field(2.0, ge=0, description="how long a batch waits to fill")
    warm_up: bool = Field(True, description="adapt once per meta-learner at start-up")

    job_threads: int = Field(1, ge=0, le=64, description="threads of this process that run "
                             "adaptation jobs (202 responses); 0 = leave them to other processes")
    job_torch_threads: int = Field(0, ge=0, description="PyTorch intra-op threads of a job thread "
                                   "while it adapts; 0 = torch_threads in a serving process, cores / "
                                   "job_threads in a worker process (metaserve worker: nothing else "
                                   "computes there)")
    job_lease_seconds: float = Field(30.0, gt=0, description="a job whose worker has not renewed "
                                     "its lease for this long (it died) goes back to the queue")
    job_poll_seconds: float = Field(1.0, gt=0, description="how often idle job threads look "
                                    "for jobs other processes queued")
    max_pending_jobs_per_tenant: int = Field(0, ge=0, description="queued + running adaptation "
                                             "jobs one tenant may have (429 with Retry-After beyond); "
                                             "0 = no cap")
    job_max_attempts: int = Field(3, ge=1, description="a job is marked failed after this many "
                                  "attempts whose worker died or errored")

    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    max_response_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="predictions larger "
                                    "than this are refused (422: ask for top_k)")
    body_timeout_seconds: float = Field(30.0, gt=0, description="a request body must arrive within "
                                        "this time (408 otherwise)")
    max_requests_per_client: int = Field(64, ge=0, description="/v1 requests in progress per client "
                                         "address and process (429 beyond); 0 = no cap")
    inline_call_max_ms: float = Field(10.0, ge=0, description="an adaptation or prediction "
                                      "runs on the event loop, without a worker-thread hand-off, "
                                      "when it is the process's only request in flight and the "
                                      "75th percentile of the last 32 calls of its route and "
                                      "meta-learner is under this; 0 = always a worker thread")
    max_connections: int = Field(1000, ge=1, description="open connections per process before "
                                 "uvicorn answers 503")
    max_image_bytes: int = Field(4 * 1024 * 1024, ge=64, description="bytes of one image input "
                                 "(after base64 decoding)")
    max_image_pixels: int = Field(4096 * 4096, ge=64, description="pixels of one image input, "
                                  "checked from its header before decoding")
    embedding_cache_bytes: int = Field(64 * 1024 * 1024, ge=0, description="photo and sentence "
                                       "embeddings kept per process and input kind, keyed by the "
                                       "model and the input's bytes (0 = off)")
    default_ttl_seconds: int = Field(7 * 24 * 3600, ge=1)
    max_ttl_seconds: int = Field(30 * 24 * 3600, ge=1)

    auth_enabled: bool = Field(True, description="require API keys on /v1 (off only for local use)")
    rate_limit_per_minute: int = Field(600, ge=0, description="per API key (per process, or across "
                                       "replicas with METASERVE_RATE_LIMIT_STORAGE); 0 = off")
    rate_limit_storage: str = Field("memory", description="where rate limits are counted: memory "
                                    "(per process) or a storage URI every replica shares, e.g. "
                                    "redis://127.0.0.1:6379 (the limits library)")
    auth_cache_seconds: float = Field(5.0, ge=0, description="how long a process trusts an API "
                                      "key it has verified without reading the database again: "
                                      "a revoked key keeps working up to this long; 0 = every "
                                      "request reads it")
    auth_failures_per_minute: int = Field(30, ge=0, description="failed authentications per client "
                                          "address and process before 429; 0 = off")
    max_models_per_tenant: int = Field(100_000, ge=1)
    sweep_interval_seconds: float = Field(60.0, ge=0, description="expiry sweep period; 0 = off")
    orphan_grace_seconds: float = Field(300.0, ge=0,
                                        description="age before an artifact without a row is removed")

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.default_ttl_seconds > self.max_ttl_seconds:
            raise ValueError("METASERVE_DEFAULT_TTL_SECONDS exceeds METASERVE_MAX_TTL_SECONDS")
        return self

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'metaserve.db'}"

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "artifacts"

    @property
    def resolved_torch_threads(self) -> int:
        if self.torch_threads:
            return self.torch_threads
        return max(1, available_cores() // self.workers)

    def resolved_job_torch_threads(self, only_jobs: bool) -> int:
        """A job thread's intra-op threads; ``only_jobs``: the process serves no requests."""
        if self.job_torch_threads:
            return self.job_torch_threads
        if only_jobs:
            return max(1, available_cores() // max(self.job_threads, 1))
        return self.resolved_torch_threads


def available_cores() -> int:
    """The cores this process may use: those it is pinned to (cpuset), at most its cgroup's
    CPU quota rounded up (a container's CPU limit), not every core of the host."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return max(cores, 1)
    if quota != "max" and int(period) > 0:
        cores = min(cores, -(-int(quota) // int(period)))
    return max(cores, 1)


@lru_cache
def get_settings() -> Settings:
    """The process's settings (a FastAPI dependency; tests override it)."""
    return Settings()

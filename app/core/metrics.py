"""Prometheus metrics, one registry per application (so tests can build many apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("metaserve_http_requests", "HTTP requests",
                                ["method", "route", "status"], registry=r)
        self.request_latency = Histogram("metaserve_http_request_seconds", "HTTP latency",
                                         ["method", "route"], buckets=LATENCY_BUCKETS, registry=r)
        self.adaptation = Histogram("metaserve_adaptation_seconds", "adaptation compute time",
                                    ["meta_learner"], buckets=LATENCY_BUCKETS, registry=r)
        self.prediction = Histogram("metaserve_prediction_seconds", "prediction compute time",
                                    ["meta_learner"], buckets=LATENCY_BUCKETS, registry=r)
        self.cache_bytes = Gauge("metaserve_state_cache_bytes", "bytes of cached adapted states",
                                 registry=r)
        self.cache_entries = Gauge("metaserve_state_cache_entries", "cached adapted states",
                                   registry=r)
        self.cache_lookups = Counter("metaserve_state_cache_lookups", "state cache lookups",
                                     ["result"], registry=r)
        self.batch_size = Histogram("metaserve_batch_size", "requests served by one micro-batch",
                                    ["kind"], buckets=(1, 2, 4, 8, 16, 32, 64), registry=r)
        self.batching = Gauge("metaserve_batching", "1 while calls of this kind for this "
                              "meta-learner version go through the micro-batcher (auto: measured)",
                              ["kind", "meta_learner"], registry=r)
        self.corrupt_artifacts = Counter("metaserve_corrupt_artifacts",
                                         "artifacts refused for a checksum mismatch", registry=r)
        self.catalog_revision = Gauge("metaserve_catalog_revision",
                                      "the catalog revision this process serves", registry=r)
        self.catalog_refused = Gauge("metaserve_catalog_refused_versions",
                                     "catalog versions this process could not load", registry=r)
        self.catalog_reload_failures = Counter("metaserve_catalog_reload_failures",
                                               "catalog reloads that failed (the previous registry kept serving)",
                                               registry=r)
        self.adaptations_by_version = Counter("metaserve_adaptations_requested",
                                              "adaptations asked of each meta-learner version (canaries compared)",
                                              ["meta_learner", "version"], registry=r)

"""Prometheus metrics of one ingress replica (prometheus_client, one registry per job core).

Counters and histograms are fed as jobs finish; gauges (queue, replicas, memory) are read when scraped.
With several ingress replicas each answers for its own jobs; the generator gauges are the same everywhere.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from serve_app.contracts import GeneratorPool
from serve_app.jobs.records import JobRecord, JobStatus

SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 6, 8, 10, 12, 15, 20, 30, 60, 120, 300, 600)
CONTENT_TYPE = CONTENT_TYPE_LATEST
RUN_STAGES = ("queue_sec", "generation_sec", "encode_sec", "store_sec", "total_sec")


class Telemetry:
    def __init__(self):
        self.registry = registry = CollectorRegistry()
        self.accepted = Counter("fastwan_jobs_accepted", "Jobs accepted", registry=registry)
        self.finished = Counter("fastwan_jobs_finished", "Jobs finished, by final status and error code",
                                ["status", "code"], registry=registry)
        self.jobs = Gauge("fastwan_jobs", "Unfinished jobs of this ingress, by status", ["status"], registry=registry)
        self.queue_depth = Gauge("fastwan_queue_depth", "Jobs no generator replica has taken yet", registry=registry)
        self.stage_seconds = Histogram("fastwan_job_stage_seconds", "Seconds per job in each stage (queue, "
                                       "generation, encode, store, total, and the model's own stages)", ["stage"],
                                       buckets=SECONDS, registry=registry)
        self.generation_seconds = Histogram("fastwan_generation_seconds", "Model seconds per video",
                                            buckets=SECONDS, registry=registry)
        self.replicas = Gauge("fastwan_generator_replicas", "Generator replicas by state", ["state"],
                              registry=registry)
        self.busy = Gauge("fastwan_generator_replicas_busy", "Generator replicas running a job", registry=registry)
        self.gpu_memory = Gauge("fastwan_gpu_memory_bytes", "GPU memory of each generator replica: the card's "
                                "total, and the peak of its last job", ["replica", "kind"], registry=registry)

    def job_accepted(self) -> None:
        self.accepted.inc()

    def job_finished(self, job: JobRecord) -> None:
        code = job.error.code if job.error else ""
        self.finished.labels(status=job.status.value, code=code).inc()
        if job.status != JobStatus.completed:
            return
        m = job.metrics
        for stage in RUN_STAGES:
            if getattr(m, stage) is not None:
                self.stage_seconds.labels(stage=stage.removesuffix("_sec")).observe(getattr(m, stage))
        for stage, seconds in m.stages.items():
            self.stage_seconds.labels(stage=stage).observe(seconds)
        if m.generation_sec is not None:
            self.generation_seconds.observe(m.generation_sec)
        if m.peak_vram_gb and m.replica:
            self.gpu_memory.labels(replica=m.replica, kind="peak").set(m.peak_vram_gb * 1e9)

    def render(self, live: list[JobRecord], waiting: int, pool: GeneratorPool) -> bytes:
        """The exposition text, with the gauges read now."""
        for status in (JobStatus.queued, JobStatus.in_progress):
            self.jobs.labels(status=status.value).set(sum(job.status == status for job in live))
        self.queue_depth.set(waiting)
        counts = pool.counts()
        for state in ("ready", "loading", "failed", "warming_up"):
            self.replicas.labels(state=state).set(counts[state])
        self.busy.set(counts["busy"])
        for replica, status in pool.replicas.items():
            card = (status.info.details.get("gpu_memory_gb") if status.info else None)
            if card:
                self.gpu_memory.labels(replica=replica, kind="total").set(float(card) * 1e9)
        return generate_latest(self.registry)

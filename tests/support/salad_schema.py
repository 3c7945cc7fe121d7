"""A pydantic model of SaladCloud's container-group creation request (its public API's fields and limits),
strict: an unknown field such as `ipc_mode` is an error, as it would be for Salad."""

from __future__ import annotations

from typing import Literal

from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

NAME = r"^[a-z][a-z0-9-]{0,61}[a-z0-9]$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Resources(Strict):
    cpu: int = Field(ge=1, le=16)
    memory: int = Field(ge=1024, le=61440, description="MB")
    gpu_classes: list[UUID] = Field(description="GPU class UUIDs (GET /organizations/{org}/gpu-classes)")
    storage_amount: int | None = Field(None, ge=1073741824, le=268435456000, description="bytes")
    shm_size: int | None = Field(None, ge=64, description="MB; Salad's default is 64")


class Container(Strict):
    image: str = Field(min_length=1, max_length=2048)
    resources: Resources
    command: list[str] | None = None
    environment_variables: dict[str, str] | None = None
    image_caching: bool | None = None
    priority: Literal["high", "medium", "low", "batch"] | None = None


class HttpHeader(Strict):
    name: str
    value: str


class HttpProbe(Strict):
    path: str
    port: int = Field(ge=1, le=65535)
    scheme: Literal["http"] | None = "http"
    headers: list[HttpHeader] = []


class Probe(Strict):
    http: HttpProbe | None = None
    initial_delay_seconds: int = Field(ge=0, le=1200)
    period_seconds: int = Field(ge=1, le=120)
    timeout_seconds: int = Field(ge=1, le=60)
    success_threshold: int = Field(ge=1, le=10)
    failure_threshold: int = Field(ge=1, le=20)


class Networking(Strict):
    protocol: Literal["http"]
    port: int = Field(ge=1, le=65535)
    auth: bool
    load_balancer: Literal["round_robin", "least_number_of_connections"] | None = None
    single_connection_limit: bool | None = None
    client_request_timeout: int | None = Field(None, ge=1, le=100000, description="ms")
    server_response_timeout: int | None = Field(None, ge=1, le=100000, description="ms")


class QueueConnection(Strict):
    path: str = Field(min_length=1, max_length=1024)
    port: int = Field(ge=1, le=65535)
    queue_name: str = Field(pattern=NAME)


class ContainerGroupCreation(Strict):
    name: str = Field(pattern=NAME)
    display_name: str | None = Field(None, pattern=r"^[ ,-.0-9A-Za-z]+$", min_length=2, max_length=63)
    container: Container
    autostart_policy: bool
    restart_policy: Literal["always", "on_failure", "never"]
    replicas: int = Field(ge=0, le=500)
    country_codes: list[str] | None = None
    networking: Networking | None = None
    startup_probe: Probe | None = None
    readiness_probe: Probe | None = None
    liveness_probe: Probe | None = None
    queue_connection: QueueConnection | None = None

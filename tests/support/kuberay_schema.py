"""The parts of KubeRay's RayService custom resource (ray.io/v1) the project's manifest uses, as pydantic models
written from KubeRay's API reference (rayservice_types.go, raycluster_types.go): unknown keys are refused at
the RayService and RayCluster levels, `rayStartParams` values must be strings (a map[string]string), and
Kubernetes' own objects (containers, volumes) are checked for the fields the manifest relies on."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class K8s(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class EnvVar(K8s):
    name: str
    value: str | None = None
    valueFrom: dict | None = None


class Resources(K8s):
    requests: dict[str, str | int] = Field(default_factory=dict)
    limits: dict[str, str | int] = Field(default_factory=dict)


class Container(K8s):
    name: str
    image: str
    command: list[str] | None = None
    env: list[EnvVar] = Field(default_factory=list)
    resources: Resources = Field(default_factory=Resources)


class PodSpec(K8s):
    containers: list[Container] = Field(min_length=1)


class PodTemplate(K8s):
    spec: PodSpec


class HeadGroupSpec(Strict):
    rayStartParams: dict[str, str] = Field(default_factory=dict)
    template: PodTemplate
    serviceType: Literal["ClusterIP", "NodePort", "LoadBalancer"] | None = None
    enableIngress: bool | None = None
    headService: dict | None = None


class WorkerGroupSpec(Strict):
    groupName: str
    replicas: int | None = Field(None, ge=0)
    minReplicas: int | None = Field(None, ge=0)
    maxReplicas: int | None = Field(None, ge=0)
    numOfHosts: int | None = Field(None, ge=1)
    rayStartParams: dict[str, str] = Field(default_factory=dict)
    template: PodTemplate
    suspend: bool | None = None
    idleTimeoutSeconds: int | None = None


class RayClusterSpec(Strict):
    rayVersion: str | None = None
    enableInTreeAutoscaling: bool | None = None
    autoscalerOptions: dict | None = None
    headGroupSpec: HeadGroupSpec
    workerGroupSpecs: list[WorkerGroupSpec] = Field(default_factory=list)
    headServiceAnnotations: dict[str, str] | None = None
    gcsFaultToleranceOptions: dict | None = None


class UpgradeStrategy(Strict):
    type: Literal["NewCluster", "NewClusterWithIncrementalUpgrade", "None"]


class RayServiceSpec(Strict):
    serveConfigV2: str
    rayClusterConfig: RayClusterSpec
    upgradeStrategy: UpgradeStrategy | None = None
    serveService: dict | None = None
    excludeHeadPodFromServeSvc: bool | None = None
    rayClusterDeletionDelaySeconds: int | None = None


class Metadata(K8s):
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)


class RayService(Strict):
    apiVersion: Literal["ray.io/v1"]
    kind: Literal["RayService"]
    metadata: Metadata
    spec: RayServiceSpec

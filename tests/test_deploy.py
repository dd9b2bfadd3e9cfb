"""Deployment files: the Kubernetes manifests validate against the Kubernetes schema, and
compose.yaml, deploy/k8s and the loopback cluster agree on the settings they share."""

from __future__ import annotations

import os

import kubernetes_validate
import pytest
import yaml

from deploy.local_cluster import Cluster, nginx_config
from tests.conftest import REPO

K8S = sorted((REPO / "deploy" / "k8s").glob("*.yaml"))
SHARED = ["METASERVE_ARTIFACT_STORE", "METASERVE_S3_BUCKET", "METASERVE_JOB_LEASE_SECONDS",
          "METASERVE_JOB_MAX_ATTEMPTS", "METASERVE_CACHE_BYTES"]


def documents(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.mark.parametrize("path", K8S, ids=lambda p: p.name)
def test_kubernetes_manifests_validate(path):
    for doc in documents(path):
        kubernetes_validate.validate(doc, "1.30.0", strict=True)


def by_kind(kind: str) -> list[dict]:
    return [d for path in K8S for d in documents(path) if d["kind"] == kind]


def test_kubernetes_topology():
    deployments = {d["metadata"]["name"]: d for d in by_kind("Deployment")}
    api = deployments["metaserve-api"]["spec"]["template"]["spec"]["containers"][0]
    worker = deployments["metaserve-worker"]["spec"]["template"]["spec"]["containers"][0]
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert worker["command"] == ["metaserve", "worker"]
    for container in (api, worker):
        assert {"requests", "limits"} <= set(container["resources"])
        assert {"configMapRef": {"name": "metaserve"}} in container["envFrom"]
        assert {"secretRef": {"name": "metaserve"}} in container["envFrom"]
    job = by_kind("Job")[0]["spec"]["template"]["spec"]["containers"][0]
    assert job["command"] == ["metaserve", "db", "upgrade"]
    assert {h["spec"]["scaleTargetRef"]["name"] for h in by_kind("HorizontalPodAutoscaler")} == {
        "metaserve-api", "metaserve-worker"}
    secret = by_kind("Secret")[0]["stringData"]
    assert {"METASERVE_DATABASE_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(secret)


def test_compose_and_kubernetes_share_their_settings():
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    config = by_kind("ConfigMap")[0]["data"]
    api_env = compose["services"]["api-1"]["environment"]
    assert {k: str(api_env[k]) for k in SHARED} == {k: config[k] for k in SHARED}
    assert str(api_env["METASERVE_JOB_THREADS"]) == "0"
    assert str(compose["services"]["worker-1"]["environment"]["METASERVE_JOB_THREADS"]) == "1"
    assert compose["services"]["worker-1"]["command"] == ["metaserve", "worker"]
    assert {"api-1", "api-2", "worker-1", "worker-2", "nginx", "seaweedfs", "postgres", "migrate"} <= set(
        compose["services"])


def test_balancers_use_the_same_policy():
    compose_conf = (REPO / "deploy" / "nginx" / "compose.conf").read_text()
    loopback = nginx_config(REPO / "var", [8101, 8102], 8080)
    for directive in ("least_conn;", "max_fails=1 fail_timeout=2s",
                      "proxy_next_upstream error timeout http_502 http_503 non_idempotent;",
                      "proxy_next_upstream_tries 3;", "proxy_connect_timeout 2s;"):
        assert directive in compose_conf and directive in loopback


def test_a_cluster_that_does_not_come_up_names_each_process_and_its_last_log_lines(tmp_path):
    cluster = Cluster(root=tmp_path, port=1, api_port=2, replicas=1, workers=0, database_url="")
    (tmp_path / "api-0.log").write_text("starting\nsqlalchemy.exc.OperationalError: refused\n")
    cluster._record("api-0", os.getpid())
    cluster._record("worker-0", 2**22 + 7)  # above pid_max: no such process
    described = cluster.describe(lines=1)
    assert described.splitlines() == [f"--- api-0 (pid {os.getpid()}, running) ---",
                                      "sqlalchemy.exc.OperationalError: refused",
                                      f"--- worker-0 (pid {2**22 + 7}, gone) ---"]

"""The Kubernetes overlays: they render, match the schemas, and follow the deployment rules."""

from __future__ import annotations

import copy
import os
import subprocess
from pathlib import Path

import pytest

from deploy import addresses, policy, tools, validate
from tests.deploy.conftest import need

OVERLAYS = validate.OVERLAYS


def test_generated_addresses_match_their_overlays() -> None:
    stale = addresses.sync(check=True)
    assert not stale, f"stale {[str(p) for p in stale]}: run python -m deploy.validate addresses"


def test_shard_addresses_follow_the_statefulset_dns_names() -> None:
    assert addresses.shard_addresses("ns", 3) == [
        "dns:///index-0.index.ns.svc.cluster.local:50051",
        "dns:///index-1.index.ns.svc.cluster.local:50051",
        "dns:///index-2.index.ns.svc.cluster.local:50051",
    ]
    assert addresses.encoder_address("ns") == "dns:///encoder.ns.svc.cluster.local:50051"
    assert addresses.shard_addresses("ns", 2, replicas=2) == [
        "dns:///index-0.index.ns.svc.cluster.local:50051|"
        "dns:///index-replica-1-0.index-replica-1.ns.svc.cluster.local:50051",
        "dns:///index-1.index.ns.svc.cluster.local:50051|"
        "dns:///index-replica-1-1.index-replica-1.ns.svc.cluster.local:50051",
    ]


@pytest.mark.parametrize("version", validate.K8S_VERSIONS)
def test_overlays_match_the_kubernetes_schemas(rendered, version: str) -> None:
    need("kubernetes-validate")
    proc = validate.check_schemas([r.path for r in rendered.values()], version)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("rule", sorted(policy.RULES))
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_follows_rule(rendered, overlay: str, rule: str) -> None:
    assert policy.RULES[rule](rendered[overlay].docs) == []


def _index(docs: list[dict]) -> dict:
    return policy.by_kind(docs, "StatefulSet")["index"]


def _container(docs: list[dict], kind: str, name: str) -> dict:
    return policy.pod_spec(policy.by_kind(docs, kind)[name])["containers"][0]


def test_prod_runs_eight_shards_on_gpus_with_budgets(rendered) -> None:
    docs = rendered["prod"].docs
    assert _index(docs)["spec"]["replicas"] == 8
    shards = policy.container_env(docs, next(c for c in policy.containers(docs) if c.spec["name"] == "gateway"))
    assert len(shards["VIDSEARCH_GATEWAY_INDEX_SHARDS"].split(",")) == 8
    encoder = _container(docs, "Deployment", "encoder")
    assert encoder["resources"]["limits"]["nvidia.com/gpu"] == 1
    budgets = {p["spec"]["selector"]["matchLabels"].get("app.kubernetes.io/name", name)
               for name, p in policy.by_kind(docs, "PodDisruptionBudget").items()}
    assert budgets == {"gateway", "encoder", "ingest", "ingest-worker", "web", "redis",
                       *(f"index-shard-{i}" for i in range(8))}
    hpa = policy.by_kind(docs, "HorizontalPodAutoscaler")["encoder"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 8)
    assert policy.by_kind(docs, "Deployment")["gateway"]["spec"]["replicas"] >= 2


def test_prod_serves_tls_on_the_public_endpoints_only(rendered) -> None:
    docs = rendered["prod"].docs
    tls = {c.spec["name"] for c in policy.containers(docs)
           if any(k.endswith("_SERVER_TLS_CERT_FILE") for k in policy.container_env(docs, c))}
    assert tls == {"gateway", "ingest"}
    shared = next(cm for name, cm in policy.by_kind(docs, "ConfigMap").items() if name.startswith("vidsearch-shared"))
    assert shared["data"]["tls-server-name"]


def test_prod_serves_the_web_app_behind_an_ingress_with_tls(rendered) -> None:
    docs = rendered["prod"].docs
    ingress = policy.by_kind(docs, "Ingress")["web"]["spec"]
    host = ingress["rules"][0]["host"]
    assert ingress["tls"] == [{"hosts": [host], "secretName": "vidsearch-web-tls"}]
    backend = ingress["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "web", "port": {"name": "http"}}
    web = next(c for c in policy.containers(docs) if c.spec["name"] == "web")
    env = policy.container_env(docs, web)
    # Keys make a non-loopback bind legal; gateway and ingest speak TLS, so the app trusts their CA.
    assert env["VIDSEARCH_WEB_API_KEYS_FILE"] and env["VIDSEARCH_WEB_SERVER_HOST"] == "0.0.0.0"
    assert env["VIDSEARCH_WEB_TLS_CA_FILE"].endswith("ca.crt") and env["VIDSEARCH_WEB_TLS_SERVER_NAME"]
    assert policy.by_kind(docs, "Deployment")["web"]["spec"]["replicas"] >= 2


def _pods(docs: list[dict]) -> list[dict[str, str]]:
    """The labels of every index pod the StatefulSets make (the controller adds the ordinal's)."""
    return [{**s["spec"]["template"]["metadata"]["labels"], "apps.kubernetes.io/pod-index": str(i),
             "statefulset.kubernetes.io/pod-name": f"{s['metadata']['name']}-{i}"}
            for s in policy.index_replicas(docs) for i in range(s["spec"]["replicas"])]


def _selects(selector: dict, labels: dict[str, str]) -> bool:
    return selector.get("matchLabels", {}).items() <= labels.items() and not selector.get("matchExpressions")


def test_prod_runs_two_replicas_of_every_shard_apart_with_a_budget_each(rendered) -> None:
    docs = rendered["prod"].docs
    replicas = policy.index_replicas(docs)
    assert [s["metadata"]["name"] for s in replicas] == ["index", "index-replica-1"]
    assert [s["spec"]["replicas"] for s in replicas] == [8, 8]
    pods = _pods(docs)
    # Each StatefulSet owns only its own pods, and each has its own headless Service and volumes.
    for s in replicas:
        mine = [p for p in pods if _selects(s["spec"]["selector"], p)]
        assert {p["statefulset.kubernetes.io/pod-name"] for p in mine} == {
            f"{s['metadata']['name']}-{i}" for i in range(8)}
        service = policy.by_kind(docs, "Service")[s["spec"]["serviceName"]]["spec"]
        assert service["clusterIP"] == "None" and service["publishNotReadyAddresses"] is True
        assert [p for p in pods if _selects({"matchLabels": service["selector"]}, p)] == mine
        # Replicas of a shard on different nodes and zones: the constraints count the pods of the
        # incoming pod's ordinal across both StatefulSets.
        constraints = {(c["topologyKey"], c["whenUnsatisfiable"]): c
                       for c in policy.pod_spec(s)["topologySpreadConstraints"]}
        for key in ("kubernetes.io/hostname", "topology.kubernetes.io/zone"):
            c = constraints[(key, "DoNotSchedule")]
            assert c["maxSkew"] == 1 and c["matchLabelKeys"] == ["apps.kubernetes.io/pod-index"]
            assert all(_selects(c["labelSelector"], p) for p in pods)
    # One budget per shard, covering exactly its two replicas, one away at a time; no pod has two.
    budgets = [b["spec"] for b in policy.by_kind(docs, "PodDisruptionBudget").values()]
    for pod in pods:
        (budget,) = [b for b in budgets if _selects(b["selector"], pod)]
        shard = [p for p in pods if _selects(budget["selector"], p)]
        assert {p["apps.kubernetes.io/pod-index"] for p in shard} == {pod["apps.kubernetes.io/pod-index"]}
        assert len(shard) == 2 and budget["minAvailable"] == 1
    # Gateway and ingest write to both replicas of a shard; the network lets the replicas reach each other.
    for name in ("gateway", "ingest"):
        env = policy.container_env(docs, next(c for c in policy.containers(docs) if c.spec["name"] == name))
        shards = next(v for k, v in env.items() if k.endswith("_INDEX_SHARDS")).split(",")
        assert [s.count("|") for s in shards] == [1] * 8
    ingress = policy.by_kind(docs, "NetworkPolicy")["index-ingress"]["spec"]
    assert all(_selects(ingress["podSelector"], p) for p in pods)
    assert any(_selects(peer["podSelector"], p) for peer in ingress["ingress"][0]["from"] for p in pods)


def test_prod_replica_peers_are_the_same_ordinal_of_the_other_statefulset(rendered) -> None:
    docs = rendered["prod"].docs
    peers = {}
    for s in policy.index_replicas(docs):
        env = policy.container_env(docs, policy.Container(s, policy.pod_spec(s), policy.pod_spec(s)["containers"][0]))
        names = [v["name"] for v in policy.pod_spec(s)["containers"][0]["env"]]
        # Kubernetes expands $(VAR) only from variables defined earlier in the list.
        assert names.index("SHARD_ORDINAL") < names.index("VIDSEARCH_INDEX_PEERS")
        assert names.index("POD_NAMESPACE") < names.index("VIDSEARCH_INDEX_PEERS")
        pod_3 = env["VIDSEARCH_INDEX_PEERS"].replace("$(SHARD_ORDINAL)", "3").replace("$(POD_NAMESPACE)", "vidsearch")
        peers[s["metadata"]["name"]] = (env["VIDSEARCH_INDEX_REPLICA"], pod_3)
    assert peers == {
        "index": ("0", "dns:///index-replica-1-3.index-replica-1.vidsearch.svc.cluster.local:50051"),
        "index-replica-1": ("1", "dns:///index-3.index.vidsearch.svc.cluster.local:50051"),
    }
    gateway = policy.container_env(docs, next(c for c in policy.containers(docs) if c.spec["name"] == "gateway"))
    shard_3 = gateway["VIDSEARCH_GATEWAY_INDEX_SHARDS"].split(",")[3].split("|")
    assert shard_3 == [peers["index-replica-1"][1], peers["index"][1]]


PROD_MUTATIONS = {
    "fewer pods in one replica set": ("index-statefulset", lambda d: policy.by_kind(d, "StatefulSet")[
        "index-replica-1"]["spec"].update(replicas=7)),
    "not-ready replicas have no DNS name": ("index-statefulset", lambda d: policy.by_kind(d, "Service")[
        "index-replica-1"]["spec"].pop("publishNotReadyAddresses")),
    "peers before the ordinal": ("index-statefulset", lambda d: policy.pod_spec(policy.by_kind(d, "StatefulSet")[
        "index"])["containers"][0]["env"].reverse()),
    "a replica missing from the shard list": ("addresses", lambda d: d.remove(
        policy.by_kind(d, "StatefulSet")["index-replica-1"])),
}


@pytest.mark.parametrize("mutation", sorted(PROD_MUTATIONS))
def test_rules_catch_a_broken_replica_set_up(rendered, mutation: str) -> None:
    rule, mutate = PROD_MUTATIONS[mutation]
    docs = copy.deepcopy(rendered["prod"].docs)
    assert policy.RULES[rule](docs) == []
    mutate(docs)
    assert policy.RULES[rule](docs), f"rule {rule} did not notice: {mutation}"


def test_dev_runs_two_shards_on_cpu(rendered) -> None:
    docs = rendered["dev"].docs
    assert _index(docs)["spec"]["replicas"] == 2
    assert [s["metadata"]["name"] for s in policy.index_replicas(docs)] == ["index"]  # one replica per shard
    env = policy.container_env(docs, policy.Container(_index(docs), policy.pod_spec(_index(docs)),
                                                      policy.pod_spec(_index(docs))["containers"][0]))
    assert "VIDSEARCH_INDEX_PEERS" not in env
    encoder = next(c for c in policy.containers(docs) if c.spec["name"] == "encoder")
    assert "nvidia.com/gpu" not in str(encoder.spec["resources"])
    assert policy.container_env(docs, encoder)["VIDSEARCH_ENCODER_DEVICE"] == "cpu"
    assert not policy.by_kind(docs, "PodDisruptionBudget")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_redis_keeps_the_queue_and_bounds_the_cache(rendered, overlay: str) -> None:
    docs = rendered[overlay].docs
    redis = policy.by_kind(docs, "StatefulSet")["redis"]
    assert redis["spec"]["volumeClaimTemplates"]
    conf = next(cm for name, cm in policy.by_kind(docs, "ConfigMap").items() if name.startswith("redis-config"))
    lines = {line.split()[0]: line.split(None, 1)[1] for line in conf["data"]["redis.conf"].splitlines()
             if line.strip() and not line.startswith("#")}
    assert lines["appendonly"] == "yes"
    # Only keys with a TTL may be evicted: cache entries, never the job queue's streams.
    assert lines["maxmemory-policy"] == "volatile-lru" and lines["maxmemory"] != "0"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_redis_password_is_a_mounted_secret_never_in_the_url(rendered, overlay: str) -> None:
    """Redis requires the password of user vidsearch (its ACL file comes from the Secret
    vidsearch-redis), and every client reads that password from the same Secret, mounted as a
    file, with a URL that carries none."""
    from urllib.parse import urlsplit

    docs = rendered[overlay].docs
    conf = next(cm for name, cm in policy.by_kind(docs, "ConfigMap").items() if name.startswith("redis-config"))
    aclfile = next(line.split()[1] for line in conf["data"]["redis.conf"].splitlines() if line.startswith("aclfile"))
    redis = policy.pod_spec(policy.by_kind(docs, "StatefulSet")["redis"])
    mounted = {v["name"]: v for v in redis["volumes"]}
    mount = next(m for m in redis["containers"][0]["volumeMounts"] if aclfile.startswith(m["mountPath"] + "/"))
    assert mounted[mount["name"]]["secret"]["secretName"] == "vidsearch-redis"
    clients = [c for c in policy.containers(docs)
               if any(k.endswith("_REDIS_URL") for k in policy.container_env(docs, c))]
    assert {c.workload["metadata"]["name"] for c in clients} == {"gateway", "ingest", "ingest-worker"}
    for c in clients:
        env = policy.container_env(docs, c)
        url = next(v for k, v in env.items() if k.endswith("_REDIS_URL"))
        assert urlsplit(url).username == "vidsearch" and urlsplit(url).password is None
        password_file = next(v for k, v in env.items() if k.endswith("_REDIS_PASSWORD_FILE"))
        volume = next(m["name"] for m in c.spec["volumeMounts"] if password_file.startswith(m["mountPath"] + "/"))
        secret = next(v["secret"] for v in c.pod["volumes"] if v["name"] == volume)
        assert secret["secretName"] == "vidsearch-redis" and secret["items"][0]["key"] == "password"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_shard_names_come_from_the_pod_ordinal(rendered, overlay: str) -> None:
    from services.index.server import shard_name_from_host

    docs = rendered[overlay].docs
    n = _index(docs)["spec"]["replicas"]
    sets = [s["metadata"]["name"] for s in policy.index_replicas(docs)]
    # Pod index-N (and index-replica-R-N) must serve the N-th shard the gateway lists.
    shards = policy.container_env(docs, next(c for c in policy.containers(docs) if c.spec["name"] == "gateway"))
    for i, shard in enumerate(shards["VIDSEARCH_GATEWAY_INDEX_SHARDS"].split(",")):
        pods = [address.removeprefix("dns:///").split(".")[0] for address in shard.split("|")]
        assert pods == [f"{s}-{i}" for s in sets]
        assert {shard_name_from_host(pod) for pod in pods} == {f"shard-{i}"}
    assert i == n - 1


def test_an_external_redis_is_one_setting(tmp_path: Path) -> None:
    overlay = tmp_path / "external-redis"
    overlay.mkdir()
    (overlay / "generated").mkdir()
    (overlay / "generated" / "addresses.env").write_text(addresses.addresses_env(addresses.OverlayShape("vs", 1)))
    base = os.path.relpath(validate.K8S / "base", overlay)  # kustomize refuses absolute bases
    (overlay / "kustomization.yaml").write_text(f"""
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: vs
resources: [{base}]
configMapGenerator:
  - name: vidsearch-shared
    behavior: merge
    envs: [generated/addresses.env]
    literals: [redis-url=rediss://redis.example.internal:6380/0]
""")
    try:
        proc = subprocess.run([*tools.kustomize(), str(overlay)], capture_output=True, text=True, check=False)
    except tools.ToolUnavailable as exc:
        pytest.skip(str(exc))
    except tools.ToolMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    assert proc.returncode == 0, proc.stderr
    docs = validate.load(proc.stdout)
    assert "redis" not in policy.by_kind(docs, "StatefulSet")
    for c in policy.containers(docs):
        urls = {v for k, v in policy.container_env(docs, c).items() if k.endswith("_REDIS_URL")}
        assert urls in (set(), {"rediss://redis.example.internal:6380/0"})


# The rules must catch what they guard: each mutation of a valid overlay breaks one rule.
def _gateway(docs):
    return policy.pod_spec(policy.by_kind(docs, "Deployment")["gateway"])


MUTATIONS = {
    "resources": lambda d: _gateway(d)["containers"][0]["resources"].pop("limits"),
    "hardened": lambda d: _gateway(d)["containers"][0]["securityContext"].update(readOnlyRootFilesystem=False),
    "grpc-probes": lambda d: _gateway(d)["containers"][0].update(
        readinessProbe={"tcpSocket": {"port": 50051}}),
    "grace-periods": lambda d: _gateway(d).update(terminationGracePeriodSeconds=10),
    "secrets-as-files": lambda d: _gateway(d)["containers"][0]["env"].append(
        {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "vidsearch-api-keys", "key": "keys"}}}),
    "network-policies": lambda d: policy.by_kind(d, "NetworkPolicy")["index-ingress"]["spec"]["ingress"][0].pop("from"),
    "index-statefulset": lambda d: _index(d)["spec"].pop("volumeClaimTemplates"),
    "addresses": lambda d: _index(d)["spec"].update(replicas=3),
    "images-pinned": lambda d: _gateway(d)["containers"][0].update(image="vidsearch-service:latest"),
    "autoscaled-encoder": lambda d: policy.by_kind(d, "Deployment")["encoder"]["spec"].update(replicas=2),
}


@pytest.mark.parametrize("rule", sorted(MUTATIONS))
def test_rule_catches_its_regression(rendered, rule: str) -> None:
    assert set(MUTATIONS) == set(policy.RULES)
    docs = copy.deepcopy(rendered["dev"].docs)
    MUTATIONS[rule](docs)
    assert policy.RULES[rule](docs), f"rule {rule} did not notice the mutation"

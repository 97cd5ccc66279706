"""Rules every rendered overlay must follow, each a function from manifests to violations.

Schema validation and the security scan check generic Kubernetes hygiene; these rules check
what is specific to vidsearch: gRPC probes on the served port, grace periods above the
services' own drain time, addresses that match the shard count, the shape of the network
policies. ``python -m deploy.validate`` and tests/deploy both run them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")
GRPC_PORT = 50051
HTTP_PORT = 8080
METRICS_PORT = 9090
DEFAULT_GRACE_SECONDS = 10.0
# Components clients outside the namespace may reach, and the one port they may reach each on.
PUBLIC = {"gateway": GRPC_PORT, "ingest": GRPC_PORT, "web": HTTP_PORT}
HEALTHCHECK = "/opt/vidsearch/healthcheck.py"

Manifest = dict
Rule = Callable[[list[Manifest]], list[str]]


@dataclass(frozen=True)
class Container:
    """One container with the workload and pod spec around it."""

    workload: Manifest
    pod: dict
    spec: dict

    @property
    def where(self) -> str:
        return f"{self.workload['kind']}/{self.workload['metadata']['name']} container {self.spec['name']}"

    @property
    def is_vidsearch(self) -> bool:
        return "vidsearch-" in self.spec.get("image", "") or "/vidsearch/" in self.spec.get("image", "")


def pod_spec(workload: Manifest) -> dict:
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]


def workloads(docs: list[Manifest]) -> list[Manifest]:
    return [d for d in docs if d.get("kind") in WORKLOAD_KINDS]


def containers(docs: list[Manifest]) -> Iterator[Container]:
    for workload in workloads(docs):
        pod = pod_spec(workload)
        for spec in [*pod.get("initContainers", ()), *pod["containers"]]:
            yield Container(workload, pod, spec)


def by_kind(docs: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {d["metadata"]["name"]: d for d in docs if d.get("kind") == kind}


def _configmap(docs: list[Manifest], name: str) -> dict[str, str]:
    """A ConfigMap's data by its (hashed) name; {} when absent."""
    return by_kind(docs, "ConfigMap").get(name, {}).get("data", {})


def container_env(docs: list[Manifest], c: Container) -> dict[str, str]:
    """The container's environment as far as ConfigMaps and literals define it."""
    env: dict[str, str] = {}
    for source in c.spec.get("envFrom", ()):
        if "configMapRef" in source:
            env.update(_configmap(docs, source["configMapRef"]["name"]))
    for var in c.spec.get("env", ()):
        if "value" in var:
            env[var["name"]] = var["value"]
        elif "configMapKeyRef" in var.get("valueFrom", {}):
            ref = var["valueFrom"]["configMapKeyRef"]
            env[var["name"]] = _configmap(docs, ref["name"]).get(ref["key"], "")
    return env


def component(workload: Manifest) -> str:
    return workload["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/name", "")


def resources_set(docs: list[Manifest]) -> list[str]:
    """Every container requests and limits CPU and memory."""
    out = []
    for c in containers(docs):
        res = c.spec.get("resources", {})
        for part in ("requests", "limits"):
            missing = [r for r in ("cpu", "memory") if r not in res.get(part, {})]
            if missing:
                out.append(f"{c.where}: no {part} for {', '.join(missing)}")
    return out


def hardened(docs: list[Manifest]) -> list[str]:
    """Non-root, read-only root with /tmp on an emptyDir, no capabilities, seccomp, no escalation."""
    out = []
    for c in containers(docs):
        pod_sc, sc = c.pod.get("securityContext", {}), c.spec.get("securityContext", {})
        if not (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")):
            out.append(f"{c.where}: runAsNonRoot is not set")
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{c.where}: allowPrivilegeEscalation must be false")
        if sc.get("readOnlyRootFilesystem") is not True:
            out.append(f"{c.where}: readOnlyRootFilesystem must be true")
        if "ALL" not in sc.get("capabilities", {}).get("drop", ()) or sc.get("capabilities", {}).get("add"):
            out.append(f"{c.where}: must drop ALL capabilities and add none")
        seccomp = sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}
        if seccomp.get("type") != "RuntimeDefault":
            out.append(f"{c.where}: seccompProfile must be RuntimeDefault")
        if sc.get("privileged") or c.pod.get("hostNetwork") or c.pod.get("hostPID") or c.pod.get("hostIPC"):
            out.append(f"{c.where}: privileged or host namespaces")
        volumes = {v["name"]: v for v in c.pod.get("volumes", ())}
        tmp = [m for m in c.spec.get("volumeMounts", ()) if m["mountPath"] == "/tmp"]
        if not tmp or "emptyDir" not in volumes.get(tmp[0]["name"], {}):
            out.append(f"{c.where}: /tmp must be an emptyDir (the root filesystem is read-only)")
        if c.pod.get("automountServiceAccountToken") is not False:
            out.append(f"{c.where}: automountServiceAccountToken must be false")
    return out


def _tls_enabled(env: dict[str, str]) -> bool:
    return any(k.endswith("_SERVER_TLS_CERT_FILE") and v for k, v in env.items())


def grpc_probes(docs: list[Manifest]) -> list[str]:
    """vidsearch gRPC servers have readiness, liveness and startup probes on gRPC health.

    Native ``grpc`` probes on the served port; where the server speaks TLS, which the kubelet's
    gRPC probe cannot, an exec probe of the image's TLS-aware health check instead. The web app
    (an ``http`` port) needs httpGet probes on it: /readyz for readiness, /healthz for the others.
    A container with neither (the ingest worker) needs a liveness probe on its metrics port.
    """
    out = []
    for c in containers(docs):
        if not c.is_vidsearch:
            continue
        ports = {p.get("name"): p["containerPort"] for p in c.spec.get("ports", ())}
        if "http" in ports:
            for kind, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz"),
                               ("startupProbe", "/healthz")):
                http = c.spec.get(kind, {}).get("httpGet", {})
                if http.get("path") != path or http.get("port") not in ("http", ports["http"]):
                    out.append(f"{c.where}: {kind} must be an httpGet of {path} on its http port")
            continue
        if "grpc" not in ports:
            http = c.spec.get("livenessProbe", {}).get("httpGet", {})
            if http.get("port") not in ("metrics", METRICS_PORT):
                out.append(f"{c.where}: serves no gRPC, so it needs an httpGet liveness probe on its metrics port")
            continue
        env = container_env(docs, c)
        tls = _tls_enabled(env)
        for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
            probe = c.spec.get(kind)
            if probe is None:
                out.append(f"{c.where}: no {kind}")
            elif tls:
                command = probe.get("exec", {}).get("command", [])
                if HEALTHCHECK not in command or "VIDSEARCH_HEALTHCHECK_TLS_CA" not in env:
                    out.append(f"{c.where}: {kind} of a TLS server must exec {HEALTHCHECK} with TLS settings")
            elif probe.get("grpc", {}).get("port") != ports["grpc"] or ports["grpc"] != GRPC_PORT:
                out.append(f"{c.where}: {kind} must be a grpc probe on port {GRPC_PORT}, got {probe}")
    return out


def grace_periods(docs: list[Manifest]) -> list[str]:
    """terminationGracePeriodSeconds exceeds the service's SERVER_GRACE_SECONDS drain."""
    out = []
    for c in containers(docs):
        if not c.is_vidsearch:
            continue
        env = container_env(docs, c)
        graces = [float(v) for k, v in env.items() if k.endswith("_SERVER_GRACE_SECONDS")]
        grace = max(graces, default=DEFAULT_GRACE_SECONDS)
        period = c.pod.get("terminationGracePeriodSeconds", 30)
        if not period > grace:
            out.append(f"{c.where}: terminationGracePeriodSeconds {period} must exceed the server grace {grace}")
    return out


def secrets_as_files(docs: list[Manifest]) -> list[str]:
    """Secrets reach containers only as mounted files: never env variables or arguments."""
    out = []
    for c in containers(docs):
        for var in c.spec.get("env", ()):
            if "secretKeyRef" in var.get("valueFrom", {}):
                out.append(f"{c.where}: env {var['name']} comes from a Secret; mount it as a file")
        if any("secretRef" in s for s in c.spec.get("envFrom", ())):
            out.append(f"{c.where}: envFrom a Secret; mount it as a file")
        for arg in [*c.spec.get("command", ()), *c.spec.get("args", ())]:
            if any(word in arg.lower() for word in ("password", "api-key", "apikey", "token", "secret")):
                out.append(f"{c.where}: argument {arg!r} looks like a credential")
    return out


def _external_peer(rule: dict) -> bool:
    peers = rule.get("from")
    if not peers:
        return True
    return any("ipBlock" in p or "namespaceSelector" in p for p in peers)


def network_policies(docs: list[Manifest]) -> list[str]:
    """Default deny; every pod admitted by some policy; only the PUBLIC components reachable from outside."""
    out = []
    policies = list(by_kind(docs, "NetworkPolicy").values())
    deny = [p for p in policies if p["spec"].get("podSelector") == {} and not p["spec"].get("ingress")
            and "Ingress" in p["spec"].get("policyTypes", ())]
    if not deny:
        out.append("no default-deny ingress NetworkPolicy (podSelector: {}, no ingress rules)")
    for policy in policies:
        selector = policy["spec"].get("podSelector", {}).get("matchLabels", {})
        target = selector.get("app.kubernetes.io/name")
        for rule in policy["spec"].get("ingress", ()):
            if not _external_peer(rule):
                continue
            ports = {p.get("port") for p in rule.get("ports", ())}
            monitoring = all(
                p.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name") == "monitoring"
                for p in rule.get("from") or [{}])
            if ports == {METRICS_PORT} and monitoring:
                continue
            if target not in PUBLIC or ports != {PUBLIC[target]}:
                out.append(f"NetworkPolicy/{policy['metadata']['name']}: admits traffic from outside the "
                           f"namespace to {target or 'every pod'} on ports {sorted(map(str, ports)) or 'all'}")
    for workload in workloads(docs):
        name = component(workload)
        labels = workload["spec"]["template"]["metadata"]["labels"]
        admitted = [p for p in policies if p["spec"].get("ingress") and (selector := p["spec"].get(
                    "podSelector", {}).get("matchLabels", {})) and selector.items() <= labels.items()]
        if name != "ingest-worker" and not admitted:
            out.append(f"{workload['kind']}/{workload['metadata']['name']}: no NetworkPolicy admits its callers")
    return out


def index_replicas(docs: list[Manifest]) -> list[Manifest]:
    """The StatefulSets of the shards' replicas in replica order: index, index-replica-1, ..."""
    sets = by_kind(docs, "StatefulSet")
    out = []
    while (name := "index" if not out else f"index-replica-{len(out)}") in sets:
        out.append(sets[name])
    return out


def _peers(replica: int, replicas: list[Manifest]) -> str:
    """What VIDSEARCH_INDEX_PEERS of a replica must be: the same ordinal in every other replica set."""
    return "|".join(f"dns:///{s['metadata']['name']}-$(SHARD_ORDINAL).{s['spec']['serviceName']}.$(POD_NAMESPACE)"
                    f".svc.cluster.local:{GRPC_PORT}" for r, s in enumerate(replicas) if r != replica)


def index_statefulset(docs: list[Manifest]) -> list[str]:
    """Shards: StatefulSets (one per replica) with a volumeClaimTemplate and headless Service; names
    from the ordinal; with replicas, as many pods in each, and each pod names the same ordinal of
    the others as its peers (defined after the variables the address uses)."""
    out = []
    replicas = index_replicas(docs)
    if not replicas:
        return ["no StatefulSet named index"]
    for r, index in enumerate(replicas):
        where = f"StatefulSet/{index['metadata']['name']}"
        spec = index["spec"]
        if not spec.get("volumeClaimTemplates"):
            out.append(f"{where} has no volumeClaimTemplates")
        service = by_kind(docs, "Service").get(spec.get("serviceName", ""))
        if service is None or service["spec"].get("clusterIP") != "None":
            out.append(f"{where} needs a headless governing Service (clusterIP: None)")
        container = pod_spec(index)["containers"][0]
        env = container_env(docs, Container(index, pod_spec(index), container))
        if env.get("VIDSEARCH_INDEX_SHARD_NAME"):
            out.append("VIDSEARCH_INDEX_SHARD_NAME is set: every pod would claim the same shard; "
                       "leave it unset so each derives shard-N from its ordinal")
        data_dir = env.get("VIDSEARCH_INDEX_DATA_DIR", "")
        claims = {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", ())}
        if not any(m["name"] in claims and data_dir.startswith(m["mountPath"])
                   for m in container.get("volumeMounts", ())):
            out.append(f"{where}: VIDSEARCH_INDEX_DATA_DIR {data_dir!r} is not on the claim template's volume")
        if len(replicas) == 1:
            continue
        if spec.get("replicas", 1) != replicas[0]["spec"].get("replicas", 1):
            out.append(f"{where} has {spec.get('replicas', 1)} pods, StatefulSet/index has "
                       f"{replicas[0]['spec'].get('replicas', 1)}: every shard needs each replica")
        if service is not None and not service["spec"].get("publishNotReadyAddresses"):
            out.append(f"Service/{service['metadata']['name']} must publishNotReadyAddresses: a replica "
                       "catching up takes writes before it is ready")
        names = [v["name"] for v in container.get("env", ())]
        if (env.get("VIDSEARCH_INDEX_PEERS") != _peers(r, replicas) or env.get("VIDSEARCH_INDEX_REPLICA") != str(r)
                or names[-2:] != ["VIDSEARCH_INDEX_REPLICA", "VIDSEARCH_INDEX_PEERS"]
                or not {"SHARD_ORDINAL", "POD_NAMESPACE"} <= set(names)):
            out.append(f"{where}: VIDSEARCH_INDEX_REPLICA must be {r} and VIDSEARCH_INDEX_PEERS "
                       f"{_peers(r, replicas)!r}, after SHARD_ORDINAL and POD_NAMESPACE")
    return out


def addresses(docs: list[Manifest]) -> list[str]:
    """Gateway and ingest list exactly the StatefulSets' shards, in order, each shard's replicas
    separated by |, via headless DNS."""
    out = []
    replicas = index_replicas(docs)
    if not replicas:
        return ["no StatefulSet named index"]
    index = replicas[0]
    namespace = index["metadata"].get("namespace", "")
    n = index["spec"].get("replicas", 1)
    wanted = ["|".join(f"dns:///{s['metadata']['name']}-{i}.{s['spec']['serviceName']}.{namespace}.svc.cluster.local:"
                       f"{GRPC_PORT}" for s in replicas) for i in range(n)]
    encoder_service = by_kind(docs, "Service").get("encoder", {})
    if encoder_service.get("spec", {}).get("clusterIP") != "None":
        out.append("Service/encoder must be headless so clients round-robin over every replica")
    for c in containers(docs):
        for key, value in container_env(docs, c).items():
            if key.endswith("_INDEX_SHARDS") and value.split(",") != wanted:
                out.append(f"{c.where}: {key}={value!r} does not list the {n} shards of namespace {namespace}")
            if key.endswith("_ENCODER") and value != f"dns:///encoder.{namespace}.svc.cluster.local:{GRPC_PORT}":
                out.append(f"{c.where}: {key}={value!r} is not the encoder's headless dns:/// target")
    return out


def images_pinned(docs: list[Manifest]) -> list[str]:
    out = []
    for c in containers(docs):
        image = c.spec.get("image", "")
        tag = image.rsplit("/", 1)[-1]
        if "@sha256:" not in image and (":" not in tag or tag.endswith(":latest")):
            out.append(f"{c.where}: image {image!r} has no fixed tag or digest")
    return out


def autoscaled_encoder(docs: list[Manifest]) -> list[str]:
    """The encoder is scaled by an HPA and its Deployment leaves the replica count to it."""
    hpas = [h for h in by_kind(docs, "HorizontalPodAutoscaler").values()
            if h["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "encoder"}]
    out = [] if hpas else ["no HorizontalPodAutoscaler targets Deployment/encoder"]
    encoder = by_kind(docs, "Deployment").get("encoder")
    if encoder is not None and "replicas" in encoder["spec"]:
        out.append("Deployment/encoder sets replicas, which fights its HorizontalPodAutoscaler")
    return out


RULES: dict[str, Rule] = {
    "resources": resources_set,
    "hardened": hardened,
    "grpc-probes": grpc_probes,
    "grace-periods": grace_periods,
    "secrets-as-files": secrets_as_files,
    "network-policies": network_policies,
    "index-statefulset": index_statefulset,
    "addresses": addresses,
    "images-pinned": images_pinned,
    "autoscaled-encoder": autoscaled_encoder,
}


def check(docs: list[Manifest]) -> dict[str, list[str]]:
    """Violations by rule name; empty lists when the manifests follow every rule."""
    return {name: rule(docs) for name, rule in RULES.items()}

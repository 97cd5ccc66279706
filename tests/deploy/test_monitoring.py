"""deploy/monitoring: the dashboard, the alert rules and the autoscaler read metrics the services
really export, under the names they export them."""

from __future__ import annotations

import importlib
import json
import re

import yaml
from prometheus_client import REGISTRY

from tests.procs import ROOT

MONITORING = ROOT / "deploy" / "monitoring"
#: Every module that defines vidsearch metrics, imported so their metrics are registered.
METRIC_MODULES = ("services.common.interceptors", "services.encoder.batcher", "services.encoder.server",
                  "services.index.metrics", "services.ingest.backlog", "services.ingest.pipeline",
                  "services.ingest.servicer", "services.ingest.worker", "services.gateway.cache",
                  "services.gateway.fanout")
_NAME = re.compile(r"\bvidsearch_[a-z0-9_]+")
_SUFFIXES = ("_bucket", "_count", "_sum", "_total")


def exported() -> set[str]:
    """Metric family names the services register (Counters without ``_total``) plus the shard gauges."""
    for module in METRIC_MODULES:
        importlib.import_module(module)
    from services.index.metrics import _GAUGES

    return {family.name for family in REGISTRY.collect()} | {name for name, _, _ in _GAUGES}


def referenced(text: str) -> set[str]:
    return set(_NAME.findall(text))


def _known(name: str, names: set[str]) -> bool:
    return name in names or any(name.endswith(s) and name.removesuffix(s) in names for s in _SUFFIXES)


def test_dashboard_alerts_and_adapter_name_only_exported_metrics() -> None:
    names = exported()
    for path in ("dashboard.json", "alerts.yaml", "prometheus-adapter.yaml"):
        used = referenced((MONITORING / path).read_text())
        assert used, f"{path} names no vidsearch metric"
        unknown = sorted(n for n in used if not _known(n, names))
        assert not unknown, f"{path} reads metrics no service exports: {unknown}"


def test_the_check_catches_a_renamed_metric() -> None:
    assert not _known("vidsearch_encoder_queue_depth", exported())
    assert _known("vidsearch_encoder_queue_wait_seconds_bucket", exported())


def test_alert_rules_are_well_formed_and_use_defined_recordings() -> None:
    groups = yaml.safe_load((MONITORING / "alerts.yaml").read_text())["groups"]
    rules = [r for g in groups for r in g["rules"]]
    recorded = {r["record"] for r in rules if "record" in r}
    alerts = [r for r in rules if "alert" in r]
    assert len(alerts) >= 6 and all(r["expr"].strip() for r in rules)
    for alert in alerts:
        assert alert["labels"]["severity"] in {"page", "warn", "info"}, alert["alert"]
        assert alert["annotations"]["summary"], alert["alert"]
        for used in re.findall(r"\bvidsearch:[a-z0-9_:]+", alert["expr"]):
            assert used in recorded, f"{alert['alert']} reads {used}, which no rule records"


def test_dashboard_panels_query_prometheus_through_the_datasource_variable() -> None:
    dash = json.loads((MONITORING / "dashboard.json").read_text())
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
    assert {v["name"] for v in dash["templating"]["list"]} == {"datasource", "namespace"}
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"], panel["title"]
    titles = " ".join(p["title"] for p in panels)
    for topic in ("Queue depth", "Inference time", "Device memory", "Fresh rows", "Search time per part",
                  "Stream lag", "cache hit ratio", "Shard search latency", "Shard failures"):
        assert topic.lower() in titles.lower(), topic


def test_prod_encoder_scales_on_the_queue_the_adapter_serves(rendered) -> None:
    adapter = yaml.safe_load((MONITORING / "prometheus-adapter.yaml").read_text())
    served = {rule["name"]["as"] for rule in adapter["rules"]["custom"]}
    hpa = next(d for d in rendered["prod"].docs if d["kind"] == "HorizontalPodAutoscaler")
    metrics = hpa["spec"]["metrics"]
    assert [m["type"] for m in metrics] == ["Pods"], "prod scales on queue depth, not CPU"
    assert metrics[0]["pods"]["metric"]["name"] in served & exported()

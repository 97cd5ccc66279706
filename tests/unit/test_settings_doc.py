"""docs/settings.md is generated from the settings classes, covers every service, and is current."""

from __future__ import annotations

import re

from services.common import settings_doc
from services.common.settings import ServerSettings

ROOT = settings_doc.ROOT
VARIABLE = re.compile(r"\bVIDSEARCH_[A-Z0-9_]*[A-Z0-9]\b")


def test_the_committed_reference_is_current() -> None:
    committed = settings_doc.DOC.read_text(encoding="utf-8") if settings_doc.DOC.is_file() else ""
    assert committed == settings_doc.render(), (
        f"docs/settings.md is stale: regenerate it with `{settings_doc.REGENERATE}` and commit the result")


def test_every_service_with_settings_is_in_the_reference() -> None:
    """A service that loads settings with load_or_exit(cls, prefix) must be listed in settings_doc.SERVICES."""
    loaded = set()
    for path in (ROOT / "services").rglob("*.py"):
        loaded.update(re.findall(r'load_or_exit\((\w+), "(VIDSEARCH_\w+)"\)', path.read_text(encoding="utf-8")))
    listed = {(class_name, prefix) for _, prefix, _, class_name, _ in settings_doc.SERVICES}
    assert loaded and loaded <= listed, f"add to settings_doc.SERVICES: {sorted(loaded - listed)}"


def test_every_variable_the_deployments_set_is_documented() -> None:
    """Kubernetes and compose files may only set variables that exist: a typo there is silently ignored."""
    documented = settings_doc.variables()
    prefixes = {prefix for _, prefix, *_ in settings_doc.SERVICES}
    files = [*(ROOT / "deploy" / "k8s").rglob("*.yaml"), *(ROOT / "deploy" / "k8s").rglob("*.env"),
             ROOT / "docker-compose.yml"]
    used = {(name, path.relative_to(ROOT)) for path in files for name in VARIABLE.findall(path.read_text())}
    unknown = sorted((str(path), name) for name, path in used if name not in documented | prefixes)
    assert len(used) > 20 and not unknown, unknown


def test_every_setting_has_a_description() -> None:
    rows = [row for *_, cls, _ in settings_doc._service_classes() for row in settings_doc.settings_of(cls, "X")]
    rows += settings_doc.settings_of(ServerSettings, "X")
    assert len(rows) > 60 and all(doc for *_, doc in rows)
    assert "VIDSEARCH_INGEST_SERVER_MAX_CONNECTION_AGE_MS" in settings_doc.variables()

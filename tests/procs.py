"""Test access to the process helpers (they live in ``services.local.processes`` for ``vidsearch up``)."""

from services.local.processes import ROOT, RedisServer, ServiceProcess, free_port, health_status

__all__ = ["ROOT", "RedisServer", "ServiceProcess", "free_port", "health_status"]

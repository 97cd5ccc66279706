"""Test access to the process helpers (they live in ``services.processes`` for ``vidsearch up``)."""

from services.processes import ROOT, RedisServer, ServiceProcess, free_port, health_status

__all__ = ["ROOT", "RedisServer", "ServiceProcess", "free_port", "health_status"]

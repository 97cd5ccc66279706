"""The local stack: every service as its own process on loopback (``vidsearch up``, the demo, tests, benchmarks)."""

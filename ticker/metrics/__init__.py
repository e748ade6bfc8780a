"""Prometheus metrics (prometheus-client): every metric of a process, and the lock-free hot-path ones."""

"""Helpers for scripts/bench_server.py: server launchers, a raw tus client, workloads, an RSS sampler."""

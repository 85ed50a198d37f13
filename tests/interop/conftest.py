"""Interop fixtures: the locked npm packages, installed on first use."""

from __future__ import annotations

import pytest
from interop.node_runner import ensure_packages, node_unavailable


@pytest.fixture(scope="session")
def node_packages() -> None:
    """Node 20 with tus-js-client, Uppy and playwright-core from package-lock.json (skip without node)."""
    reason = node_unavailable()
    if reason:
        pytest.skip(reason)
    ensure_packages()

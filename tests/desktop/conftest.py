"""Fixtures of the desktop tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from http_fault_proxy import FaultProxy

from support import ServerProcess


@pytest.fixture
def proxy(tus_server: ServerProcess) -> Iterator[FaultProxy]:
    """A fault proxy in front of the shared server; by default it only forwards, and counts upload bytes."""
    p = FaultProxy(tus_server.origin).start()
    yield p
    p.stop()

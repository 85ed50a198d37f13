"""tus-js-client (Node 20, the locked version) against a live tuskit server: every upload mode users rely on.

Each test runs tests/interop/tus_node.mjs with one scenario and then checks, over HTTP, that the bytes the
server serves hash to the source's SHA-256.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from interop.node_runner import ScriptSession, run_script
from tus_calls import poll

from support import TUS, ServerProcess, free_port, stored_sha256

pytestmark = pytest.mark.usefixtures("node_packages")

CHUNK = 256 * 1024


def _source(tmp_path: Path, size: int, name: str = "source.bin") -> tuple[Path, str]:
    path = tmp_path / name
    path.write_bytes(os.urandom(size))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def _client(server: ServerProcess, path: Path, scenario: str, **job: Any) -> dict[str, Any]:
    return run_script("tus_node.mjs", {"endpoint": server.url, "scenario": scenario, "path": str(path),
                                       "name": path.name, **job})


def _requests_for(server: ServerProcess, upload_url: str) -> list[str]:
    """The server's request log lines for one upload, complete up to now (a marker request fences the log)."""
    marker = secrets.token_hex(8)
    requests.options(server.url, headers={"X-Request-ID": marker}, timeout=10)
    poll(lambda: any(marker in line for line in server.output))
    upload_path = "/files/" + upload_url.rsplit("/", 1)[1]
    return [line for line in server.output if upload_path in line]


def test_upload_from_a_buffer_in_chunks(tus_server: ServerProcess, tmp_path: Path) -> None:
    path, digest = _source(tmp_path, 1_300_000)
    answer = _client(tus_server, path, "buffer", chunkSize=300_000)
    assert stored_sha256(answer["url"]) == digest
    patches = [line for line in _requests_for(tus_server, answer["url"]) if " PATCH " in line]
    assert len(patches) == 5  # 1.3 MB in 300 kB chunks


def test_upload_from_a_file_stream(tus_server: ServerProcess, tmp_path: Path) -> None:
    path, digest = _source(tmp_path, 2_000_001)
    answer = _client(tus_server, path, "fileStream", chunkSize=CHUNK)
    assert stored_sha256(answer["url"]) == digest


def test_upload_data_during_creation_needs_no_patch(tus_server: ServerProcess, tmp_path: Path) -> None:
    path, digest = _source(tmp_path, 700_000)
    answer = _client(tus_server, path, "dataDuringCreation")
    assert stored_sha256(answer["url"]) == digest
    assert not [line for line in _requests_for(tus_server, answer["url"]) if " PATCH " in line]


def test_parallel_uploads_are_concatenated_and_verified(tus_server: ServerProcess, tmp_path: Path) -> None:
    path, digest = _source(tmp_path, 3_000_003)
    answer = _client(tus_server, path, "parallel", metadata={"sha256": digest})
    head = requests.head(answer["url"], headers=TUS, timeout=10)
    assert head.status_code == 200
    kind, _, parts = head.headers["Upload-Concat"].partition(";")
    assert kind == "final" and len(parts.split()) == 4
    assert stored_sha256(answer["url"]) == digest


def test_declared_sha256_mismatch_fails_the_parallel_upload(tus_server: ServerProcess, tmp_path: Path) -> None:
    path, _ = _source(tmp_path, 400_000)
    with pytest.raises(AssertionError, match="460"):
        _client(tus_server, path, "parallel", metadata={"sha256": "0" * 64})


def test_abort_then_resume_from_the_stored_fingerprint(tus_server: ServerProcess, tmp_path: Path) -> None:
    path, digest = _source(tmp_path, 2_000_000)
    storage = str(tmp_path / "tus-urls.json")
    first = _client(tus_server, path, "startThenAbort", chunkSize=CHUNK, storage=storage)
    assert first["accepted"] == CHUNK
    head = requests.head(first["url"], headers=TUS, timeout=10)
    assert head.headers["Upload-Offset"] == str(CHUNK)
    assert _client(tus_server, path, "stored", storage=storage)["uploads"] == [first["url"]]

    second = _client(tus_server, path, "resume", chunkSize=CHUNK, storage=storage)
    assert second["previous"] == 1
    assert second["url"] == first["url"]
    assert second["resumedFrom"] == CHUNK  # it continued where the server stood, not from zero
    assert stored_sha256(second["url"]) == digest
    # without removeFingerprintOnSuccess the finished upload stays findable
    assert _client(tus_server, path, "stored", storage=storage)["uploads"] == [first["url"]]


def test_remove_fingerprint_on_success(tus_server: ServerProcess, tmp_path: Path) -> None:
    path, digest = _source(tmp_path, 600_000)
    storage = str(tmp_path / "tus-urls.json")
    answer = _client(tus_server, path, "resume", chunkSize=CHUNK, storage=storage, removeFingerprintOnSuccess=True)
    assert answer["previous"] == 0 and answer["resumedFrom"] == 0
    assert stored_sha256(answer["url"]) == digest
    assert _client(tus_server, path, "stored", storage=storage)["uploads"] == []


def test_upload_length_deferred(tus_server: ServerProcess, tmp_path: Path) -> None:
    path, digest = _source(tmp_path, 1_000_000)
    answer = _client(tus_server, path, "deferredLength", chunkSize=CHUNK)
    head = requests.head(answer["url"], headers=TUS, timeout=10)
    assert head.headers["Upload-Length"] == "1000000"
    assert stored_sha256(answer["url"]) == digest


def test_bearer_token_in_headers_reaches_an_authenticated_server(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("node-token-0b7c carol\n")
    server = server_factory("--tokens", str(tokens))
    path, digest = _source(tmp_path, 500_000)
    with pytest.raises(AssertionError, match="401"):
        _client(server, path, "buffer")
    answer = _client(server, path, "buffer", headers={"Authorization": "Bearer node-token-0b7c"})
    assert stored_sha256(answer["url"], {"Authorization": "Bearer node-token-0b7c"}) == digest


@pytest.mark.parametrize("protocol", ["tus-v1", "ietf-draft-05"])
def test_the_client_rides_through_a_server_restart(server_factory: Callable[..., ServerProcess],
                                                    tmp_path: Path, protocol: str) -> None:
    """SIGTERM mid-upload, restart on the same address: tus-js-client's own retries resume the same upload
    (a failed HEAD answered 5xx would make it start over; the server answers those 423), in tus and in the
    IETF draft (interop 6)."""
    port = str(free_port())
    server = server_factory("--port", port)
    path, digest = _source(tmp_path, 3_000_000)
    session = ScriptSession("tus_node.mjs", {"endpoint": server.url, "scenario": "throughRestart",
                                             "path": str(path), "name": path.name, "chunkSize": CHUNK,
                                             "protocol": protocol})
    try:
        session.until("holding")
        session.say("go")
        assert server.stop() == 0
        server_factory("--port", port, data_dir=server.data_dir)
        url = session.until("url")["url"]
    finally:
        session.close()

    requests_sent = [event["request"] for event in session.events if "request" in event]
    assert requests_sent.count("POST") == 1  # never started over with a new upload
    assert "HEAD" in requests_sent  # it asked where to resume
    accepted = [event["accepted"] for event in session.events if "accepted" in event]
    assert accepted == sorted(set(accepted)) and accepted[-1] == 3_000_000
    assert stored_sha256(url) == digest

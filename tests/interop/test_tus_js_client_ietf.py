"""tus-js-client (Node 20, the locked 4.3.1) speaking the IETF draft to a live tuskit server: `ietf-draft-03`
sends interop version 5, `ietf-draft-05` version 6. Each test checks the stored bytes' SHA-256 over HTTP and
that every response came from the draft's front end."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
import requests
from interop.node_runner import run_script

from support import TUS, ServerProcess, stored_sha256

pytestmark = pytest.mark.usefixtures("node_packages")

PROTOCOLS = {"ietf-draft-03": "5", "ietf-draft-05": "6"}
CHUNK = 256 * 1024


def _source(tmp_path: Path, size: int) -> tuple[Path, str]:
    path = tmp_path / "source.bin"
    path.write_bytes(os.urandom(size))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def _client(server: ServerProcess, path: Path, protocol: str, scenario: str, **job: Any) -> dict[str, Any]:
    answer = run_script("tus_node.mjs", {"endpoint": server.url, "scenario": scenario, "path": str(path),
                                         "name": path.name, "protocol": protocol, **job})
    # every answer the client got came from the draft's front end, in the version it asked for
    assert {r["interop"] for r in answer["responses"]} == {PROTOCOLS[protocol]}, answer["responses"]
    return answer


def _methods(answer: dict[str, Any]) -> list[str]:
    return [r["method"] for r in answer["responses"]]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_single_upload(tus_server: ServerProcess, tmp_path: Path, protocol: str) -> None:
    path, digest = _source(tmp_path, 700_001)
    answer = _client(tus_server, path, protocol, "buffer")
    assert _methods(answer) == ["POST", "PATCH"]
    assert stored_sha256(answer["url"]) == digest


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_chunked_uploads(tus_server: ServerProcess, tmp_path: Path, protocol: str) -> None:
    path, digest = _source(tmp_path, 1_300_000)
    answer = _client(tus_server, path, protocol, "buffer", chunkSize=300_000)
    assert _methods(answer) == ["POST"] + ["PATCH"] * 5
    assert stored_sha256(answer["url"]) == digest
    head = requests.head(answer["url"], headers={"Upload-Draft-Interop-Version": PROTOCOLS[protocol]}, timeout=10)
    assert head.headers["Upload-Complete"] == "?1" and head.headers["Upload-Offset"] == "1300000"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_data_during_creation(tus_server: ServerProcess, tmp_path: Path, protocol: str) -> None:
    path, digest = _source(tmp_path, 600_000)
    answer = _client(tus_server, path, protocol, "dataDuringCreation")
    assert _methods(answer) == ["POST"]
    assert stored_sha256(answer["url"]) == digest


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_aborted_upload_resumed_in_a_new_process(tus_server: ServerProcess, tmp_path: Path,
                                                    protocol: str) -> None:
    path, digest = _source(tmp_path, 1_500_000)
    storage = str(tmp_path / "tus-urls.json")
    first = _client(tus_server, path, protocol, "startThenAbort", chunkSize=CHUNK, storage=storage)
    assert first["accepted"] == CHUNK
    second = _client(tus_server, path, protocol, "resume", chunkSize=CHUNK, storage=storage)
    assert second["previous"] == 1 and second["url"] == first["url"]
    assert second["resumedFrom"] == CHUNK  # it asked the server (HEAD) and went on from there
    assert _methods(second)[0] == "HEAD" and "POST" not in _methods(second)
    assert stored_sha256(second["url"]) == digest


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_finished_upload_resumed_again_is_recognised(tus_server: ServerProcess, tmp_path: Path,
                                                       protocol: str) -> None:
    """HEAD gives Upload-Length, so the client sees offset == size and sends nothing more."""
    path, digest = _source(tmp_path, 300_000)
    storage = str(tmp_path / "tus-urls.json")
    first = _client(tus_server, path, protocol, "resume", chunkSize=CHUNK, storage=storage)
    again = _client(tus_server, path, protocol, "resume", chunkSize=CHUNK, storage=storage)
    assert again["url"] == first["url"] and _methods(again) == ["HEAD"]
    assert stored_sha256(again["url"]) == digest


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_length_deferred_from_a_stream(tus_server: ServerProcess, tmp_path: Path, protocol: str) -> None:
    path, digest = _source(tmp_path, 1_000_000)
    answer = _client(tus_server, path, protocol, "deferredLength", chunkSize=CHUNK)
    assert stored_sha256(answer["url"]) == digest
    assert requests.head(answer["url"], headers=TUS, timeout=10).headers["Upload-Length"] == "1000000"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_empty_file(tus_server: ServerProcess, tmp_path: Path, protocol: str) -> None:
    path, digest = _source(tmp_path, 0)
    answer = _client(tus_server, path, protocol, "buffer")
    assert _methods(answer) == ["POST"]  # the client sends no PATCH: Upload-Length: 0 finished it
    assert stored_sha256(answer["url"]) == digest


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_declared_sha256_is_verified(tus_server: ServerProcess, tmp_path: Path, protocol: str) -> None:
    path, digest = _source(tmp_path, 400_000)
    answer = _client(tus_server, path, protocol, "buffer", metadata={"sha256": digest})
    assert stored_sha256(answer["url"]) == digest
    with pytest.raises(AssertionError, match="460"):
        _client(tus_server, path, protocol, "buffer", metadata={"sha256": "0" * 64})


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_terminate(tus_server: ServerProcess, tmp_path: Path, protocol: str) -> None:
    path, _ = _source(tmp_path, 1_000_000)
    answer = _client(tus_server, path, protocol, "startThenAbort", chunkSize=CHUNK, terminate=True,
                     storage=str(tmp_path / "tus-urls.json"))
    assert _methods(answer)[-1] == "DELETE" and answer["responses"][-1]["status"] == 204
    assert requests.head(answer["url"], headers=TUS, timeout=10).status_code == 410


def test_parallel_uploads_are_refused_clearly(tus_server: ServerProcess, tmp_path: Path) -> None:
    """tus-js-client builds parallel uploads from tus concatenation even in its draft modes."""
    path, _ = _source(tmp_path, 400_000)
    with pytest.raises(AssertionError, match=r"tus 1\.0 only"):
        _client(tus_server, path, "ietf-draft-05", "parallel")

"""Concatenation and concatenation-unfinished: partials merged into a final, verified like any upload."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable

import pytest
import requests

from support import TUS, ServerProcess, b64, create_upload, patch_upload


def _partial(server: ServerProcess, length: int | None, data: bytes | None = None) -> str:
    created = create_upload(server.url, length, headers={"Upload-Concat": "partial"}, data=data)
    assert created.status_code == 201, created.text
    return str(created.headers["Location"])


def _final(server: ServerProcess, parts: list[str], metadata: str | None = None) -> requests.Response:
    headers = {**TUS, "Upload-Concat": "final;" + " ".join(parts)}
    if metadata:
        headers["Upload-Metadata"] = metadata
    return requests.post(server.url, headers=headers, timeout=30)


def _head(url: str) -> requests.Response:
    return requests.head(url, headers=TUS, timeout=30)


def _declared(body: bytes) -> str:
    return f"sha256 {b64(hashlib.sha256(body).hexdigest())}"


def _wait_for_offset(url: str, deadline_s: float = 20) -> requests.Response:
    deadline = time.monotonic() + deadline_s
    while "Upload-Offset" not in (head := _head(url)).headers:
        assert head.status_code == 200, head.text
        assert time.monotonic() < deadline, "final upload never completed"
        time.sleep(0.05)
    return head


def test_final_over_finished_partials_is_merged_and_verified(tus_server: ServerProcess) -> None:
    chunks = [os.urandom(1024 * 1024 + 7), b"", os.urandom(333)]
    parts = [_partial(tus_server, len(c), c) for c in chunks]
    whole = b"".join(chunks)
    final = _final(tus_server, parts, _declared(whole))
    assert final.status_code == 201
    url = final.headers["Location"]
    head = _head(url)
    assert head.headers["Upload-Offset"] == head.headers["Upload-Length"] == str(len(whole))
    assert head.headers["Upload-Concat"] == "final;" + " ".join(parts)
    assert requests.get(url, timeout=30).content == whole
    # partials stay what they were
    assert requests.get(parts[0], timeout=30).content == chunks[0]


def test_partials_may_be_named_by_path(tus_server: ServerProcess) -> None:
    parts = [_partial(tus_server, 2, b"ab"), _partial(tus_server, 2, b"cd")]
    paths = ["/files/" + p.rsplit("/", 1)[1] for p in parts]
    final = _final(tus_server, paths)
    assert final.status_code == 201
    assert requests.get(final.headers["Location"], timeout=30).content == b"abcd"


def test_final_over_unfinished_partials_completes_by_itself(tus_server: ServerProcess) -> None:
    a, b = os.urandom(200_000), os.urandom(300_000)
    part_a, part_b = _partial(tus_server, len(a)), _partial(tus_server, None)  # one with a deferred length
    final = _final(tus_server, [part_a, part_b], _declared(a + b))
    assert final.status_code == 201
    url = final.headers["Location"]
    assert "Upload-Offset" not in final.headers

    assert patch_upload(part_a, 0, a[:100]).status_code == 204
    head = _head(url)
    assert head.status_code == 200
    assert "Upload-Offset" not in head.headers and "Upload-Length" not in head.headers
    assert "Upload-Expires" not in head.headers  # it lives as long as its partials do
    assert requests.get(url, timeout=30).status_code == 404

    assert patch_upload(part_a, 100, a[100:]).status_code == 204
    assert "Upload-Offset" not in _head(url).headers  # b is still open
    assert patch_upload(part_b, 0, b, {"Upload-Length": str(len(b))}).status_code == 204

    head = _wait_for_offset(url)
    assert head.headers["Upload-Offset"] == head.headers["Upload-Length"] == str(len(a) + len(b))
    assert requests.get(url, timeout=30).content == a + b


def test_final_with_a_wrong_sha256_over_finished_partials_is_460(tus_server: ServerProcess) -> None:
    parts = [_partial(tus_server, 3, b"abc"), _partial(tus_server, 3, b"def")]
    final = _final(tus_server, parts, _declared(b"abcdeX"))
    assert final.status_code == 460


def test_final_with_a_wrong_sha256_over_unfinished_partials_is_gone_once_merged(tus_server: ServerProcess) -> None:
    part = _partial(tus_server, 3)
    url = _final(tus_server, [part], _declared(b"xyz")).headers["Location"]
    assert patch_upload(part, 0, b"abc").status_code == 204
    deadline = time.monotonic() + 20
    while (head := _head(url)).status_code == 200:
        assert "Upload-Offset" not in head.headers
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert head.status_code == 410
    gone = requests.get(url, timeout=30)
    assert gone.status_code == 410 and "sha256" in gone.text


def test_patch_and_offsets_of_a_final_are_refused(tus_server: ServerProcess) -> None:
    part = _partial(tus_server, 3)
    url = _final(tus_server, [part]).headers["Location"]
    assert patch_upload(url, 0, b"abc").status_code == 403
    assert "Upload-Offset" not in _head(url).headers


@pytest.mark.parametrize("kind", ["not-partial", "unknown", "terminated"])
def test_final_over_something_that_is_not_a_live_partial_is_400(tus_server: ServerProcess, kind: str) -> None:
    if kind == "not-partial":
        ref = create_upload(tus_server.url, 2).headers["Location"]
    elif kind == "unknown":
        ref = tus_server.url + "0123456789abcdef0123456789abcdef"
    else:
        ref = _partial(tus_server, 2)
        assert requests.delete(ref, headers=TUS, timeout=30).status_code == 204
    response = _final(tus_server, [ref])
    assert response.status_code == 400
    assert "Location" not in response.headers


def test_final_with_a_length_is_400(tus_server: ServerProcess) -> None:
    part = _partial(tus_server, 2, b"ab")
    response = requests.post(tus_server.url, timeout=30,
                             headers={**TUS, "Upload-Concat": f"final;{part}", "Upload-Length": "2"})
    assert response.status_code == 400


def test_final_whose_partial_is_terminated_fails_instead_of_waiting_forever(tus_server: ServerProcess) -> None:
    kept, dropped = _partial(tus_server, 2, b"ab"), _partial(tus_server, 2)
    url = _final(tus_server, [kept, dropped]).headers["Location"]
    assert requests.delete(dropped, headers=TUS, timeout=30).status_code == 204
    deadline = time.monotonic() + 20
    while (head := _head(url)).status_code == 200:
        assert time.monotonic() < deadline, "final kept waiting for a partial that is gone"
        time.sleep(0.05)
    assert head.status_code == 410
    gone = requests.get(url, timeout=30)
    assert gone.status_code == 410 and dropped.rsplit("/", 1)[1] in gone.text


def test_final_ends_when_a_partial_expires(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory("--expire-after", "1s", "--sweep-interval", "0.2s")
    done, waiting = _partial(server, 2, b"ab"), _partial(server, 2)
    url = _final(server, [done, waiting]).headers["Location"]
    deadline = time.monotonic() + 30
    while (head := _head(url)).status_code == 200:
        assert time.monotonic() < deadline, "final outlived its expired partial"
        time.sleep(0.05)
    assert head.status_code == 410
    assert requests.get(done, timeout=30).content == b"ab"  # a finished partial never expires

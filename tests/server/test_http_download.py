"""GET downloads of finished uploads: ranges, and types that a browser may render only when they are safe."""

from __future__ import annotations

import hashlib

import pytest
import requests

from support import TUS, ServerProcess, b64, create_upload, patch_upload

BODY = bytes(range(256)) * 40  # 10240 bytes


@pytest.fixture(scope="module")
def finished(tus_server: ServerProcess) -> str:
    created = create_upload(tus_server.url, len(BODY), data=BODY,
                            metadata=f"filename {b64('report ü.bin')},filetype {b64('text/html')}")
    assert created.status_code == 201 and created.headers["Upload-Offset"] == str(len(BODY))
    return str(created.headers["Location"])


def _get(url: str, **headers: str) -> requests.Response:
    return requests.get(url, headers=headers, timeout=30)


def test_whole_download(finished: str) -> None:
    response = _get(finished)
    assert response.status_code == 200
    assert response.content == BODY
    assert response.headers["Content-Length"] == str(len(BODY))
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.headers["ETag"] == f'"{hashlib.sha256(BODY).hexdigest()}"'


def test_download_with_tus_resumable_is_fine(finished: str) -> None:
    assert _get(finished, **TUS).content == BODY


@pytest.mark.parametrize(("header", "start", "end"), [
    ("bytes=0-0", 0, 1), ("bytes=100-199", 100, 200), ("bytes=10000-", 10000, 10240), ("bytes=-40", 10200, 10240),
    ("bytes=10200-99999", 10200, 10240), ("bytes=-99999", 0, 10240),
])
def test_range_is_206_with_content_range(finished: str, header: str, start: int, end: int) -> None:
    response = _get(finished, Range=header)
    assert response.status_code == 206
    assert response.content == BODY[start:end]
    assert response.headers["Content-Range"] == f"bytes {start}-{end - 1}/{len(BODY)}"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("header", ["bytes=10240-", "bytes=20000-30000", "bytes=5-2", "bytes=-0", "bytes=0-1,5-6",
                                    "items=0-1", "bytes=-"])
def test_unsatisfiable_range_is_416(finished: str, header: str) -> None:
    response = _get(finished, Range=header)
    assert response.status_code == 416
    assert response.headers["Content-Range"] == f"bytes */{len(BODY)}"


def test_unsafe_declared_type_is_an_attachment(finished: str) -> None:
    response = _get(finished)
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.headers["Content-Disposition"] == "attachment; filename*=UTF-8''report%20%C3%BC.bin"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(("declared", "served", "disposition"), [
    ("image/png", "image/png", "inline"),
    ("application/pdf", "application/pdf", "inline"),
    ("image/svg+xml", "application/octet-stream", "attachment"),
    ("text/html", "application/octet-stream", "attachment"),
    ("application/javascript", "application/octet-stream", "attachment"),
    ("IMAGE/PNG", "image/png", "inline"),
])
def test_content_type_comes_from_metadata_only_when_safe(tus_server: ServerProcess, declared: str, served: str,
                                                         disposition: str) -> None:
    url = create_upload(tus_server.url, 3, data=b"abc", metadata=f"filetype {b64(declared)}").headers["Location"]
    response = _get(url)
    assert response.headers["Content-Type"] == served
    assert response.headers["Content-Disposition"] == disposition
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_unfinished_upload_is_not_downloadable(tus_server: ServerProcess) -> None:
    url = create_upload(tus_server.url, 10).headers["Location"]
    patch_upload(url, 0, b"abc")
    response = _get(url)
    assert response.status_code == 404
    assert _get(url, Range="bytes=0-1").status_code == 404

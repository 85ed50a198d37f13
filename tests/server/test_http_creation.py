"""Creation, creation-with-upload, creation-defer-length and what real clients send that the spec leaves loose."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable

import pytest
import redis
import requests
from storage import Storage

from tuskit.server.redis.embedded import EmbeddedRedis

from support import (
    OFFSET_TYPE,
    TUS,
    ServerProcess,
    b64,
    chunked_body,
    create_upload,
    patch_upload,
    raw_request,
    request_head,
)


def _head(url: str) -> requests.Response:
    return requests.head(url, headers=TUS, timeout=30)


def test_creation_returns_201_and_an_absolute_location(tus_server: ServerProcess) -> None:
    created = create_upload(tus_server.url, 5)
    assert created.status_code == 201
    assert created.headers["Location"].startswith(tus_server.url)
    assert created.content == b""


def test_creation_with_upload_stores_the_body_and_reports_the_offset(tus_server: ServerProcess) -> None:
    created = create_upload(tus_server.url, 11, data=b"hello")
    assert created.status_code == 201
    assert created.headers["Upload-Offset"] == "5"
    url = created.headers["Location"]
    done = patch_upload(url, 5, b" world")
    assert done.status_code == 204 and done.headers["Upload-Offset"] == "11"
    assert requests.get(url, timeout=30).content == b"hello world"


def test_creation_with_the_whole_upload_finishes_it(tus_server: ServerProcess) -> None:
    body = b"all at once"
    created = create_upload(tus_server.url, len(body), metadata=f"sha256 {b64(hashlib.sha256(body).hexdigest())}",
                            data=body)
    assert created.status_code == 201 and created.headers["Upload-Offset"] == str(len(body))
    assert "Upload-Expires" not in created.headers
    assert requests.get(created.headers["Location"], timeout=30).content == body


def test_creation_with_upload_and_a_checksum(tus_server: ServerProcess) -> None:
    good = create_upload(tus_server.url, 10, data=b"abc",
                         headers={"Upload-Checksum": "sha1 " + b64(hashlib.sha1(b"abc").digest())})
    assert good.status_code == 201 and good.headers["Upload-Offset"] == "3"
    bad = create_upload(tus_server.url, 10, data=b"abc",
                        headers={"Upload-Checksum": "sha1 " + b64(hashlib.sha1(b"abd").digest())})
    assert bad.status_code == 460


def test_creation_with_a_body_longer_than_the_upload_is_413_and_creates_nothing(
        tus_server: ServerProcess, storage: Storage) -> None:
    before = storage.keys(tus_server)
    response = create_upload(tus_server.url, 3, data=b"four")
    assert response.status_code == 413
    assert "Location" not in response.headers
    assert storage.added(tus_server, before) == set()


def test_post_with_octet_stream_content_type_and_no_body(tus_server: ServerProcess) -> None:
    created = requests.post(tus_server.url, timeout=30, headers={
        **TUS, "Upload-Length": "4", "Content-Type": "application/octet-stream", "Content-Length": "0"})
    assert created.status_code == 201
    assert _head(created.headers["Location"]).headers["Upload-Offset"] == "0"


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/octet-stream"])
def test_post_body_of_another_content_type_is_415_and_creates_nothing(tus_server: ServerProcess, storage: Storage,
                                                                      content_type: str | None) -> None:
    before = storage.keys(tus_server)
    headers = {**TUS, "Upload-Length": "7", **({"Content-Type": content_type} if content_type else {})}
    refused = requests.post(tus_server.url, data=b"ignored", timeout=30, headers=headers)
    assert refused.status_code == 415
    assert "Location" not in refused.headers
    assert storage.added(tus_server, before) == set()


def test_a_length_the_disk_can_never_hold_is_413_without_max_size(server_factory: Callable[..., ServerProcess],
                                                                  storage: Storage) -> None:
    server = server_factory()  # no --max-size: the store's free space (S3: its largest object) is the bound
    before = storage.keys(server)
    refused = create_upload(server.url, 2**60)
    assert refused.status_code == 413 and ("can store" in refused.text or "can hold" in refused.text)
    assert storage.added(server, before) == set()
    options = requests.options(server.url, timeout=30)
    assert "Tus-Max-Size" not in options.headers  # the bound is not a configured maximum: not advertised
    deferred = create_upload(server.url, None)
    assert deferred.status_code == 201
    late = patch_upload(deferred.headers["Location"], 0, b"", {"Upload-Length": str(2**60)})
    assert late.status_code == 413
    assert create_upload(server.url, 1000).status_code == 201


@pytest.mark.parametrize("headers", [
    {},  # neither length nor deferral
    {"Upload-Length": "5", "Upload-Defer-Length": "1"},
    {"Upload-Defer-Length": "0"},
    {"Upload-Length": "-5"},
    {"Upload-Length": "5", "Upload-Metadata": "name not-base64!"},
    {"Upload-Length": "5", "Upload-Metadata": f"a {b64('1')},a {b64('2')}"},
    {"Upload-Length": "5", "Upload-Metadata": f"sha256 {b64('abc')}"},  # declared digest must be 64 hex digits
    {"Upload-Length": "5", "Upload-Concat": "whatever"},
])
def test_malformed_creation_is_400_and_creates_nothing(tus_server: ServerProcess, headers: dict[str, str]) -> None:
    response = requests.post(tus_server.url, headers={**TUS, **headers}, timeout=30)
    assert response.status_code == 400
    assert "Location" not in response.headers


def test_empty_metadata_header_like_tuspy(tus_server: ServerProcess) -> None:
    response = raw_request(tus_server.url, request_head("POST", tus_server.url, {
        **TUS, "Upload-Length": "3", "Upload-Metadata": "", "Content-Length": "0", "Connection": "close"}), "POST")
    assert response.status == 201
    head = _head(response.headers["Location"])
    assert head.status_code == 200 and "Upload-Metadata" not in head.headers


def test_key_only_and_trailing_space_metadata_like_tus_js_client(tus_server: ServerProcess) -> None:
    created = create_upload(tus_server.url, 3, metadata=f"filename {b64('a.txt')},empty ,flag")
    assert created.status_code == 201
    assert _head(created.headers["Location"]).headers["Upload-Metadata"] == f"filename {b64('a.txt')},empty,flag"


def test_zero_length_upload_is_finished_at_creation(tus_server: ServerProcess) -> None:
    empty_sha = hashlib.sha256(b"").hexdigest()
    created = create_upload(tus_server.url, 0, metadata=f"sha256 {b64(empty_sha)}")
    assert created.status_code == 201
    url = created.headers["Location"]
    head = _head(url)
    assert head.headers["Upload-Offset"] == "0" and head.headers["Upload-Length"] == "0"
    download = requests.get(url, timeout=30)
    assert download.status_code == 200 and download.content == b""
    assert patch_upload(url, 0, b"").status_code == 204


# ---- deferred length -------------------------------------------------------------------------------

def test_deferred_length_given_on_a_later_patch(tus_server: ServerProcess) -> None:
    url = create_upload(tus_server.url, None).headers["Location"]
    assert patch_upload(url, 0, b"hello ").headers["Upload-Offset"] == "6"
    assert "Upload-Length" not in _head(url).headers
    done = patch_upload(url, 6, b"world", {"Upload-Length": "11"})
    assert done.status_code == 204 and done.headers["Upload-Offset"] == "11"
    head = _head(url)
    assert head.headers["Upload-Length"] == "11" and "Upload-Defer-Length" not in head.headers
    assert requests.get(url, timeout=30).content == b"hello world"


def test_deferred_length_set_by_a_zero_byte_patch_then_repeated(tus_server: ServerProcess) -> None:
    url = create_upload(tus_server.url, None).headers["Location"]
    assert patch_upload(url, 0, b"", {"Upload-Length": "4"}).status_code == 204
    # clients repeat the known length on every later PATCH: same value is fine, another is not
    assert patch_upload(url, 0, b"ab", {"Upload-Length": "4"}).status_code == 204
    assert patch_upload(url, 2, b"cd", {"Upload-Length": "5"}).status_code == 400
    assert patch_upload(url, 2, b"cd", {"Upload-Length": "4"}).headers["Upload-Offset"] == "4"
    assert requests.get(url, timeout=30).content == b"abcd"


def test_deferred_length_below_the_offset_is_400(tus_server: ServerProcess) -> None:
    url = create_upload(tus_server.url, None).headers["Location"]
    patch_upload(url, 0, b"abcdef")
    assert patch_upload(url, 6, b"", {"Upload-Length": "3"}).status_code == 400
    assert "Upload-Length" not in _head(url).headers


def test_known_length_repeated_on_patch_is_accepted(tus_server: ServerProcess) -> None:
    url = create_upload(tus_server.url, 4).headers["Location"]
    assert patch_upload(url, 0, b"ab", {"Upload-Length": "4"}).status_code == 204
    assert patch_upload(url, 2, b"cd", {"Upload-Length": "3"}).status_code == 400


# ---- bodies --------------------------------------------------------------------------------------

def test_chunked_patch_without_content_length(tus_server: ServerProcess) -> None:
    url = create_upload(tus_server.url, 300_000).headers["Location"]
    pieces = [bytes([i]) * 100_000 for i in range(3)]
    head = request_head("PATCH", url, {**TUS, "Upload-Offset": "0", "Content-Type": OFFSET_TYPE,
                                       "Transfer-Encoding": "chunked", "Connection": "close"})
    response = raw_request(url, head + chunked_body(pieces), "PATCH")
    assert response.status == 204 and response.headers["Upload-Offset"] == "300000"
    assert requests.get(url, timeout=30).content == b"".join(pieces)


def test_zero_byte_patch_changes_nothing(tus_server: ServerProcess) -> None:
    url = create_upload(tus_server.url, 4).headers["Location"]
    patch_upload(url, 0, b"ab")
    response = patch_upload(url, 2, b"")
    assert response.status_code == 204 and response.headers["Upload-Offset"] == "2"


def test_partial_uploads_accept_upload_concat_partial_on_patch_and_head(tus_server: ServerProcess) -> None:
    url = create_upload(tus_server.url, 3, headers={"Upload-Concat": "partial"}).headers["Location"]
    assert patch_upload(url, 0, b"abc", {"Upload-Concat": "partial"}).status_code == 204
    head = requests.head(url, headers={**TUS, "Upload-Concat": "partial"}, timeout=30)
    assert head.status_code == 200 and head.headers["Upload-Concat"] == "partial"


def test_repeated_last_patch_of_a_finished_upload_answers_204_again(tus_server: ServerProcess) -> None:
    url = create_upload(tus_server.url, 3).headers["Location"]
    assert patch_upload(url, 0, b"abc").status_code == 204
    again = patch_upload(url, 3, b"")
    assert again.status_code == 204 and again.headers["Upload-Offset"] == "3"
    assert patch_upload(url, 0, b"abc").status_code == 409


# ---- busy and broken backends ------------------------------------------------------------------------

def test_a_busy_upload_is_423_for_every_verb(server_factory: Callable[..., ServerProcess], redis_url: str) -> None:
    server = server_factory("--redis-url", redis_url)
    url = create_upload(server.url, 10).headers["Location"]
    # a writer in another process that never lets go (a frozen node) holds the lease
    client = redis.Redis.from_url(redis_url)
    client.set("tuskit:lock:" + url.rsplit("/", 1)[1], "frozen-node", px=60_000)
    results: dict[str, requests.Response] = {}

    def run(name: str, call: Callable[[], requests.Response]) -> None:
        results[name] = call()

    calls = {
        "HEAD": lambda: _head(url),
        "PATCH": lambda: patch_upload(url, 0, b"abc"),
        "DELETE": lambda: requests.delete(url, headers=TUS, timeout=30),
    }
    threads = [threading.Thread(target=run, args=item) for item in calls.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert {name: r.status_code for name, r in results.items()} == {"HEAD": 423, "PATCH": 423, "DELETE": 423}
    client.delete("tuskit:lock:" + url.rsplit("/", 1)[1])
    client.close()
    assert _head(url).headers["Upload-Offset"] == "0"


def test_head_never_answers_5xx_when_redis_is_down(server_factory: Callable[..., ServerProcess],
                                                    tmp_path_factory: pytest.TempPathFactory) -> None:
    own = EmbeddedRedis(tmp_path_factory.mktemp("own-redis"))
    own.start()
    try:
        server = server_factory("--redis-url", own.url)
        url = create_upload(server.url, 10).headers["Location"]
    finally:
        own.stop()
    head = _head(url)
    assert head.status_code == 423  # tus-js-client retries a 423 but starts over after a 5xx HEAD
    assert "Upload-Offset" not in head.headers
    post = create_upload(server.url, 10)
    assert post.status_code == 503 and "Retry-After" in post.headers

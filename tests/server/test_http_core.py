"""tus core over raw HTTP: every status code and header rule of the protocol section, against a real server."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from email.utils import parsedate_to_datetime

import pytest
import requests

from support import (
    OFFSET_TYPE,
    TUS,
    ServerProcess,
    b64,
    create_upload,
    patch_upload,
    raw_request,
    request_head,
    start_server,
)

MAX = 1024 * 1024
ORIGIN = "https://app.example"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with a small Tus-Max-Size and one allowed browser origin."""
    srv = start_server(tmp_path_factory.mktemp("core"), "--max-size", "1MiB", "--cors-origins", ORIGIN)
    yield srv
    srv.stop()


def _new(server: ServerProcess, length: int | None = 10, **kw: object) -> str:
    created = create_upload(server.url, length, **kw)  # type: ignore[arg-type]
    assert created.status_code == 201, created.text
    return str(created.headers["Location"])


def _stored(server: ServerProcess, url: str) -> bytes:
    return (server.data_dir / "uploads" / url.rsplit("/", 1)[1]).read_bytes()


def _final(server: ServerProcess, *parts: str) -> requests.Response:
    return requests.post(server.url, headers={**TUS, "Upload-Concat": "final;" + " ".join(parts)}, timeout=30)


def _head(url: str, **headers: str) -> requests.Response:
    return requests.head(url, headers={**TUS, **headers}, timeout=30)


# ---- Tus-Resumable ---------------------------------------------------------------------------------

@pytest.mark.parametrize("version", [None, "0.2.2", "2.0.0"])
@pytest.mark.parametrize("method", ["POST", "HEAD", "PATCH", "DELETE"])
def test_missing_or_unsupported_version_is_412_with_tus_version_and_changes_nothing(
        server: ServerProcess, method: str, version: str | None) -> None:
    url = _new(server)
    headers = {"Upload-Length": "10", "Upload-Offset": "0", "Content-Type": OFFSET_TYPE}
    if version:
        headers["Tus-Resumable"] = version
    target = server.url if method == "POST" else url
    response = requests.request(method, target, headers=headers, data=b"x" if method == "PATCH" else None, timeout=30)
    assert response.status_code == 412
    assert response.headers["Tus-Version"] == "1.0.0"
    head = _head(url)
    assert head.status_code == 200 and head.headers["Upload-Offset"] == "0"


def test_options_ignores_tus_resumable_and_advertises_the_server(server: ServerProcess) -> None:
    response = requests.options(server.url, headers={"Tus-Resumable": "0.0.1"}, timeout=30)
    assert response.status_code == 200  # as tusd answers: checkers written against it want 200
    assert response.headers["Tus-Version"] == "1.0.0"
    assert response.headers["Tus-Max-Size"] == str(MAX)
    assert set(response.headers["Tus-Checksum-Algorithm"].split(",")) == {"sha1", "sha256", "md5", "sha512"}
    assert set(response.headers["Tus-Extension"].split(",")) == {
        "creation", "creation-with-upload", "creation-defer-length", "expiration", "checksum",
        "checksum-trailer", "termination", "concatenation", "concatenation-unfinished"}


# ---- PATCH status codes ----------------------------------------------------------------------------

@pytest.mark.parametrize("content_type", [None, "application/octet-stream", "text/plain", "application/offset"])
def test_patch_with_another_content_type_is_415(server: ServerProcess, content_type: str | None) -> None:
    url = _new(server)
    headers = {**TUS, "Upload-Offset": "0"}
    if content_type:
        headers["Content-Type"] = content_type
    assert requests.patch(url, data=b"abc", headers=headers, timeout=30).status_code == 415
    assert _head(url).headers["Upload-Offset"] == "0"


def test_content_type_parameters_are_accepted(server: ServerProcess) -> None:
    url = _new(server)
    response = patch_upload(url, 0, b"abc", {"Content-Type": OFFSET_TYPE + "; charset=binary"})
    assert response.status_code == 204 and response.headers["Upload-Offset"] == "3"


def test_wrong_offset_is_409(server: ServerProcess) -> None:
    url = _new(server)
    assert patch_upload(url, 0, b"abcd").status_code == 204
    for offset in (0, 3, 5):
        refused = patch_upload(url, offset, b"ef")
        assert refused.status_code == 409
        assert refused.headers["Upload-Offset"] == "4"  # where to resume, without a HEAD
    assert _head(url).headers["Upload-Offset"] == "4"
    assert _stored(server, url)[:4] == b"abcd"


@pytest.mark.parametrize("offset", [None, "", "-1", "abc", "1.5"])
def test_missing_or_invalid_offset_is_400(server: ServerProcess, offset: str | None) -> None:
    url = _new(server)
    headers = {**TUS, "Content-Type": OFFSET_TYPE}
    if offset is not None:
        headers["Upload-Offset"] = offset
    assert requests.patch(url, data=b"ab", headers=headers, timeout=30).status_code == 400


def test_body_past_upload_length_is_413_and_nothing_is_stored(server: ServerProcess) -> None:
    url = _new(server, 10)
    assert patch_upload(url, 0, b"0123").status_code == 204
    response = patch_upload(url, 4, b"456789AB")
    assert response.status_code == 413
    assert _head(url).headers["Upload-Offset"] == "4"
    assert _stored(server, url) == b"0123"


def test_chunked_body_past_upload_length_is_413_and_changes_nothing(server: ServerProcess) -> None:
    url = _new(server, 6)
    assert patch_upload(url, 0, b"01").status_code == 204
    pieces = iter([b"23", b"45", b"67"])  # chunked: the overrun is only seen in the last piece
    response = requests.patch(url, data=pieces, timeout=30,
                              headers={**TUS, "Upload-Offset": "2", "Content-Type": OFFSET_TYPE})
    assert response.status_code == 413
    assert _head(url).headers["Upload-Offset"] == "2"  # refused like a failed checksum: nothing recorded
    assert requests.get(url, timeout=30).status_code == 404
    assert patch_upload(url, 2, b"2345").status_code == 204
    assert requests.get(url, timeout=30).content == b"012345"


def test_upload_length_over_max_size_is_413(server: ServerProcess) -> None:
    assert create_upload(server.url, MAX + 1).status_code == 413
    assert create_upload(server.url, MAX).status_code == 201


def test_deferred_body_over_max_size_is_413(server: ServerProcess) -> None:
    url = _new(server, None)
    assert patch_upload(url, 0, bytes(MAX + 1)).status_code == 413
    assert _head(url).headers["Upload-Offset"] == "0"
    assert patch_upload(url, 0, b"ok", {"Upload-Length": str(MAX + 1)}).status_code == 413


def test_patch_on_a_final_upload_is_403(server: ServerProcess) -> None:
    part = _new(server, 3, headers={"Upload-Concat": "partial"})
    final = _final(server, part)
    assert final.status_code == 201, final.text
    response = patch_upload(final.headers["Location"], 0, b"abc")
    assert response.status_code == 403


# ---- unknown, terminated, expired ------------------------------------------------------------------

UNKNOWN = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize("method", ["HEAD", "PATCH", "DELETE", "GET"])
def test_unknown_upload_is_404_without_offset(server: ServerProcess, method: str) -> None:
    headers = {**TUS, "Upload-Offset": "0", "Content-Type": OFFSET_TYPE}
    response = requests.request(method, server.url + UNKNOWN, headers=headers, timeout=30)
    assert response.status_code == 404
    assert "Upload-Offset" not in response.headers


@pytest.mark.parametrize("method", ["HEAD", "PATCH", "DELETE", "GET"])
def test_terminated_upload_is_410_without_offset(server: ServerProcess, method: str) -> None:
    url = _new(server)
    patch_upload(url, 0, b"abc")
    deleted = requests.delete(url, headers=TUS, timeout=30)
    assert deleted.status_code == 204 and deleted.content == b""
    assert not (server.data_dir / "uploads" / url.rsplit("/", 1)[1]).exists()
    headers = {**TUS, "Upload-Offset": "3", "Content-Type": OFFSET_TYPE}
    response = requests.request(method, url, headers=headers, timeout=30)
    assert response.status_code == 410
    assert "Upload-Offset" not in response.headers


def test_delete_answers_exactly_204_for_finished_and_unfinished(server: ServerProcess) -> None:
    for body in (b"", b"0123456789"):
        url = _new(server)
        if body:
            assert patch_upload(url, 0, body).status_code == 204
        response = requests.delete(url, headers=TUS, timeout=30)
        assert response.status_code == 204
        assert response.content == b""


def test_expired_upload_is_410(server_factory: Callable[..., ServerProcess]) -> None:
    srv = server_factory("--expire-after", "1s")
    url = create_upload(srv.url, 10).headers["Location"]
    assert patch_upload(url, 0, b"abc").status_code == 204
    deadline = time.monotonic() + 20
    while _head(url).status_code != 410:
        assert time.monotonic() < deadline, "upload never expired"
        time.sleep(0.1)
    for method in ("HEAD", "PATCH"):
        response = requests.request(method, url, headers={**TUS, "Upload-Offset": "3", "Content-Type": OFFSET_TYPE},
                                    data=b"x" if method == "PATCH" else None, timeout=30)
        assert response.status_code == 410 and "Upload-Offset" not in response.headers


# ---- HEAD ------------------------------------------------------------------------------------------

def test_head_reports_offset_length_metadata_expiry_and_no_store(server: ServerProcess) -> None:
    metadata = f"filename {b64('report final.pdf')},is_confidential"
    url = _new(server, 10, metadata=metadata)
    patch_upload(url, 0, b"abc")
    head = _head(url)
    assert head.status_code == 200
    assert head.headers["Upload-Offset"] == "3"
    assert head.headers["Upload-Length"] == "10"
    assert head.headers["Upload-Metadata"] == metadata
    assert head.headers["Cache-Control"] == "no-store"
    assert parsedate_to_datetime(head.headers["Upload-Expires"]).timestamp() > time.time()
    assert head.headers["Upload-Expires"].endswith(" GMT")
    assert head.content == b""


def test_upload_expires_on_post_and_patch_but_not_once_finished(server: ServerProcess) -> None:
    created = create_upload(server.url, 4)
    assert parsedate_to_datetime(created.headers["Upload-Expires"]).timestamp() > time.time()
    url = created.headers["Location"]
    partial = patch_upload(url, 0, b"ab")
    assert "Upload-Expires" in partial.headers
    done = patch_upload(url, 2, b"cd")
    assert done.status_code == 204 and "Upload-Expires" not in done.headers
    assert "Upload-Expires" not in _head(url).headers


def test_patch_reports_the_expiry_its_progress_slid(server: ServerProcess) -> None:
    created = create_upload(server.url, 4)
    before = parsedate_to_datetime(created.headers["Upload-Expires"]).timestamp()
    while time.time() < before - 24 * 3600 + 1.5:  # let the clock move past the creation's second
        time.sleep(0.05)
    patched = patch_upload(created.headers["Location"], 0, b"ab")
    after = parsedate_to_datetime(patched.headers["Upload-Expires"]).timestamp()
    assert after > before
    assert patched.headers["Upload-Expires"] == _head(created.headers["Location"]).headers["Upload-Expires"]


def test_head_of_a_deferred_upload_says_so(server: ServerProcess) -> None:
    url = _new(server, None)
    head = _head(url)
    assert head.headers["Upload-Defer-Length"] == "1"
    assert "Upload-Length" not in head.headers


# ---- X-HTTP-Method-Override ------------------------------------------------------------------------

def _override(url: str, method: str, headers: dict[str, str] | None = None, data: bytes | None = None
              ) -> requests.Response:
    return requests.post(url, headers={**TUS, "X-HTTP-Method-Override": method, **(headers or {})}, data=data,
                         timeout=30)


def test_method_override_patch_head_delete(server: ServerProcess) -> None:
    url = _new(server, 5)
    patched = _override(url, "PATCH", {"Upload-Offset": "0", "Content-Type": OFFSET_TYPE}, b"hel")
    assert patched.status_code == 204 and patched.headers["Upload-Offset"] == "3"
    head = _override(url, "HEAD")
    assert head.status_code == 200 and head.headers["Upload-Offset"] == "3" and head.content == b""
    deleted = _override(url, "DELETE")
    assert deleted.status_code == 204
    assert _head(url).status_code == 410


def test_method_override_head_error_is_a_complete_response(server: ServerProcess) -> None:
    # over POST the client reads a body: Content-Length must match what is sent, or it waits forever
    response = raw_request(server.url, request_head("POST", server.url + UNKNOWN, {
        **TUS, "X-HTTP-Method-Override": "HEAD", "Content-Length": "0", "Connection": "close"}), "POST", timeout=10)
    assert response.status == 404


# ---- CORS ------------------------------------------------------------------------------------------

EXPOSED = {"location", "upload-offset", "upload-length", "upload-metadata", "upload-expires", "tus-resumable",
           "tus-version", "tus-extension", "tus-max-size", "tus-checksum-algorithm"}


def _exposed(response: requests.Response) -> set[str]:
    return {h.strip().lower() for h in response.headers["Access-Control-Expose-Headers"].split(",")}


@pytest.mark.parametrize("case", ["created", "head", "patch-409", "412", "404", "400-metadata", "options"])
def test_cors_on_every_response_errors_included(server: ServerProcess, case: str) -> None:
    url = _new(server)
    o = {"Origin": ORIGIN}
    response = {
        "created": lambda: create_upload(server.url, 3, headers=o),
        "head": lambda: _head(url, **o),
        "patch-409": lambda: patch_upload(url, 7, b"x", o),
        "412": lambda: requests.head(url, headers=o, timeout=30),
        "404": lambda: _head(server.url + UNKNOWN, **o),
        "400-metadata": lambda: create_upload(server.url, 3, metadata="bad !!", headers=o),
        "options": lambda: requests.options(server.url, headers=o, timeout=30),
    }[case]()
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert _exposed(response) >= EXPOSED


def test_cors_preflight_allows_every_tus_header(server: ServerProcess) -> None:
    response = requests.options(server.url, timeout=30, headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "PATCH",
        "Access-Control-Request-Headers": "tus-resumable,upload-offset,content-type"})
    assert response.status_code == 200
    allowed = {h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert allowed >= {"tus-resumable", "upload-offset", "upload-length", "upload-metadata", "upload-checksum",
                       "upload-concat", "upload-defer-length", "content-type", "x-http-method-override",
                       "x-request-id", "authorization"}
    methods = {m.strip() for m in response.headers["Access-Control-Allow-Methods"].split(",")}
    assert methods >= {"POST", "HEAD", "PATCH", "DELETE", "OPTIONS", "GET"}


def test_cors_refuses_other_origins(server: ServerProcess) -> None:
    response = _head(server.url + UNKNOWN, Origin="https://evil.example")
    assert "Access-Control-Allow-Origin" not in response.headers


def test_cors_wildcard_by_default(tus_server: ServerProcess) -> None:
    response = create_upload(tus_server.url, 1, headers={"Origin": "https://any.example"})
    assert response.headers["Access-Control-Allow-Origin"] == "*"


# ---- IDs and traversal -----------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [
    "..%2F..%2Fredis%2Fappendonly.aof", "..%2f", "%2e%2e%2fetc%2fpasswd", "..%5C..%5Credis", "abc%00def",
    "0123456789abcdef0123456789abcde%00", "0123456789ABCDEF0123456789ABCDEF", "0123456789abcdef", "..", "%2e%2e",
    "0123456789abcdef0123456789abcdef0", "redis%2Fredis.sock",
])
@pytest.mark.parametrize("method", ["HEAD", "PATCH", "DELETE", "GET"])
def test_malformed_ids_and_traversal_are_4xx(server: ServerProcess, method: str, suffix: str) -> None:
    headers = {**TUS, "Upload-Offset": "0", "Content-Type": OFFSET_TYPE, "Content-Length": "0", "Origin": ORIGIN,
               "Connection": "close"}
    response = raw_request(server.url, request_head(method, server.url + suffix, headers), method, timeout=10)
    assert 400 <= response.status < 500
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN


@pytest.mark.parametrize("path", ["/files/../redis/redis.sock", "/nothing-here", "/files/a/b"])
def test_paths_outside_the_endpoint_are_404_with_cors(server: ServerProcess, path: str) -> None:
    target = server.origin + path
    response = raw_request(target, request_head("HEAD", target, {**TUS, "Origin": ORIGIN, "Connection": "close"}),
                           "HEAD", timeout=10)
    assert response.status == 404
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert response.headers["Tus-Resumable"] == "1.0.0"


@pytest.mark.parametrize("ref", ["/files/../redis/redis.sock", "/files/..%2Fx", "/files/" + "A" * 32,
                                 "http://elsewhere.example/other/0123456789abcdef0123456789abcdef", "/files/"])
def test_bad_ids_in_upload_concat_are_400(server: ServerProcess, ref: str) -> None:
    response = _final(server, ref)
    assert response.status_code == 400
    assert "Location" not in response.headers


def test_x_request_id_is_echoed(server: ServerProcess) -> None:
    response = create_upload(server.url, 1, headers={"X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"

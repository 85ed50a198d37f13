"""Checksum and checksum-trailer: a chunk is stored only if its digest matches; raw sockets send the trailers."""

from __future__ import annotations

import hashlib
import os

import pytest
import requests

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


def _digest(algorithm: str, data: bytes) -> str:
    return f"{algorithm} {b64(hashlib.new(algorithm, data).digest())}"


def _offset(url: str) -> int:
    return int(requests.head(url, headers=TUS, timeout=30).headers["Upload-Offset"])


def _declared(body: bytes) -> str:
    return f"sha256 {b64(hashlib.sha256(body).hexdigest())}"


# ---- Upload-Checksum header ------------------------------------------------------------------------

@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "md5", "sha512"])
def test_matching_checksum_is_stored(tus_server: ServerProcess, algorithm: str) -> None:
    url = create_upload(tus_server.url, 8).headers["Location"]
    response = patch_upload(url, 0, b"abcd", {"Upload-Checksum": _digest(algorithm, b"abcd")})
    assert response.status_code == 204 and response.headers["Upload-Offset"] == "4"


def test_mismatch_is_460_and_the_chunk_is_discarded_without_spoiling_the_file(tus_server: ServerProcess) -> None:
    body = b"first-second"
    url = create_upload(tus_server.url, len(body), metadata=_declared(body)).headers["Location"]
    assert patch_upload(url, 0, b"first-").status_code == 204
    bad = patch_upload(url, 6, b"SECOND", {"Upload-Checksum": _digest("sha1", b"second")})
    assert bad.status_code == 460
    assert _offset(url) == 6
    good = patch_upload(url, 6, b"second", {"Upload-Checksum": _digest("md5", b"second")})
    assert good.status_code == 204 and good.headers["Upload-Offset"] == str(len(body))
    assert requests.get(url, timeout=30).content == body


def test_a_big_mismatched_chunk_records_nothing_even_past_checkpoints(tus_server: ServerProcess) -> None:
    body = os.urandom(10 * 1024 * 1024)  # more than the 8 MiB checkpoint interval
    url = create_upload(tus_server.url, len(body)).headers["Location"]
    assert patch_upload(url, 0, body, {"Upload-Checksum": _digest("sha256", body[:-1])}).status_code == 460
    assert _offset(url) == 0


@pytest.mark.parametrize("header", ["crc32 AAAAAA==", "xxh64 AAAAAAAAAAA="])
def test_unknown_algorithm_is_400(tus_server: ServerProcess, header: str) -> None:
    url = create_upload(tus_server.url, 4).headers["Location"]
    assert patch_upload(url, 0, b"abcd", {"Upload-Checksum": header}).status_code == 400
    assert _offset(url) == 0


@pytest.mark.parametrize("header", ["sha1", "sha1 !!!!"])
def test_malformed_checksum_is_400(tus_server: ServerProcess, header: str) -> None:
    url = create_upload(tus_server.url, 4).headers["Location"]
    assert patch_upload(url, 0, b"abcd", {"Upload-Checksum": header}).status_code == 400


def test_a_digest_of_the_wrong_length_is_460_and_stores_nothing(tus_server: ServerProcess) -> None:
    """No chunk can hash to it: a checksum mismatch, as tusd answers (strict checkers flag a 400)."""
    url = create_upload(tus_server.url, 4).headers["Location"]
    assert patch_upload(url, 0, b"abcd", {"Upload-Checksum": "sha1 " + b64(b"short")}).status_code == 460
    assert _offset(url) == 0


# ---- checksum-trailer --------------------------------------------------------------------------------

def _trailer_patch(url: str, offset: int, pieces: list[bytes], trailers: dict[str, str] | None,
                   announce: bool = True) -> tuple[int, str | None]:
    headers = {**TUS, "Upload-Offset": str(offset), "Content-Type": OFFSET_TYPE, "Transfer-Encoding": "chunked",
               "Connection": "close"}
    if announce:
        headers["Trailer"] = "Upload-Checksum"
    response = raw_request(url, request_head("PATCH", url, headers) + chunked_body(pieces, trailers), "PATCH")
    return response.status, response.headers.get("Upload-Offset")


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "md5", "sha512"])
def test_trailer_checksum_match_is_204(tus_server: ServerProcess, algorithm: str) -> None:
    url = create_upload(tus_server.url, 20).headers["Location"]
    pieces = [b"hello ", b"trailer"]
    status, offset = _trailer_patch(url, 0, pieces, {"Upload-Checksum": _digest(algorithm, b"".join(pieces))})
    assert (status, offset) == (204, "13")


def test_trailer_checksum_mismatch_is_460_and_discards_the_chunk(tus_server: ServerProcess) -> None:
    url = create_upload(tus_server.url, 20).headers["Location"]
    status, _ = _trailer_patch(url, 0, [b"hello"], {"Upload-Checksum": _digest("sha1", b"hellO")})
    assert status == 460
    assert _offset(url) == 0


def test_announced_trailer_missing_is_400(tus_server: ServerProcess) -> None:
    url = create_upload(tus_server.url, 20).headers["Location"]
    status, _ = _trailer_patch(url, 0, [b"hello"], None)
    assert status == 400
    assert _offset(url) == 0


def test_trailer_with_unknown_algorithm_is_400(tus_server: ServerProcess) -> None:
    url = create_upload(tus_server.url, 20).headers["Location"]
    status, _ = _trailer_patch(url, 0, [b"hello"], {"Upload-Checksum": "crc32 AAAAAA=="})
    assert status == 400
    assert _offset(url) == 0


def test_unannounced_trailer_is_still_verified(tus_server: ServerProcess) -> None:
    url = create_upload(tus_server.url, 20).headers["Location"]
    status, _ = _trailer_patch(url, 0, [b"hello"], {"Upload-Checksum": _digest("sha1", b"other")}, announce=False)
    assert status == 460
    status, offset = _trailer_patch(url, 0, [b"hello"], {"Upload-Checksum": _digest("sha1", b"hello")},
                                    announce=False)
    assert (status, offset) == (204, "5")


def test_big_trailer_body_in_many_chunks_with_extensions_completes_verified(tus_server: ServerProcess) -> None:
    body = os.urandom(3 * 1024 * 1024 + 5)
    url = create_upload(tus_server.url, len(body), metadata=_declared(body)).headers["Location"]
    pieces = [body[i:i + 700_000] for i in range(0, len(body), 700_000)]
    headers = {**TUS, "Upload-Offset": "0", "Content-Type": OFFSET_TYPE, "Transfer-Encoding": "chunked",
               "Trailer": "Upload-Checksum", "Connection": "close"}
    wire = b"".join(b"%x;note=1\r\n%s\r\n" % (len(p), p) for p in pieces)
    wire += f"0\r\nUpload-Checksum: {_digest('sha512', body)}\r\nX-Other: 1\r\n\r\n".encode()
    response = raw_request(url, request_head("PATCH", url, headers) + wire, "PATCH")
    assert response.status == 204 and response.headers["Upload-Offset"] == str(len(body))
    assert requests.get(url, timeout=30).content == body


def test_chunked_body_without_trailers_still_works_on_keep_alive(tus_server: ServerProcess) -> None:
    url = create_upload(tus_server.url, 10).headers["Location"]
    with requests.Session() as session:
        for offset, piece in ((0, b"abcde"), (5, b"fghij")):
            response = session.patch(url, data=iter([piece]), timeout=30,
                                     headers={**TUS, "Upload-Offset": str(offset), "Content-Type": OFFSET_TYPE})
            assert response.status_code == 204
    assert requests.get(url, timeout=30).content == b"abcdefghij"

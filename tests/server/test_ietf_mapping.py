"""The draft mapped onto tuskit's core: lengths known early or late, finished uploads, digests (RFC 9530)
verified like tus's, metadata, uploads continued across protocols, concurrency, auth, expiry and CORS."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from ietf_calls import (
    HELLO,
    append,
    append_headers,
    create,
    draft_headers,
    exchange,
    is_complete,
    limits,
    offset_of,
    read_answer,
    read_answers,
)
from tus_calls import processed_info

from tuskit import rufh

from support import (
    OFFSET_TYPE,
    TUS,
    ServerProcess,
    chunked_body,
    create_upload,
    patch_upload,
    raw_connect,
    request_head,
)


def _sf(digest: bytes) -> str:
    return ":" + base64.b64encode(digest).decode() + ":"


def _url(answer: object) -> str:
    return answer.headers["Location"]  # type: ignore[attr-defined]


# ---- length known early, late, or from the last body ----------------------------------------------------

@pytest.mark.parametrize("version", [6, 7, 8])
def test_a_complete_body_and_upload_length_must_agree(tus_server: ServerProcess, version: int) -> None:
    _, refused = create(tus_server.url, version, True, HELLO, {"Upload-Length": "12"})
    assert refused.status == 400 and "Location" not in refused.headers
    if version >= 7:
        assert refused.headers["Content-Type"] == "application/problem+json"
        assert refused.json()["type"].endswith("#inconsistent-upload-length")


def test_the_length_may_come_late_from_upload_length(tus_server: ServerProcess) -> None:
    _, created = create(tus_server.url, 7, False, b"hel")
    url = _url(created)
    assert "Upload-Length" not in offset_of(url, 7).headers
    middle = append(url, 7, 3, b"lo", complete=False, headers={"Upload-Length": "11"})
    assert middle.status_code == 204 and offset_of(url, 7).headers["Upload-Length"] == "11"
    other = append(url, 7, 5, b" world", complete=True, headers={"Upload-Length": "12"})
    assert other.status_code == 400 and other.json()["type"].endswith("#inconsistent-upload-length")
    done = append(url, 7, 5, b" world", complete=True)
    assert done.status_code == 204 and is_complete(done.headers, 7)
    assert requests.get(url, timeout=30).content == HELLO


@pytest.mark.parametrize("version", [4, 6, 8])
def test_the_last_body_fixes_an_unknown_length(tus_server: ServerProcess, version: int) -> None:
    _, created = create(tus_server.url, version, False, b"hello")
    url = _url(created)
    done = append(url, version, 5, b" world", complete=True)
    assert done.status_code in (201, 204) and is_complete(done.headers, version)
    assert offset_of(url, version).headers["Upload-Length"] == "11"
    mismatch = append(url, version, 11, b"!", complete=True)  # now the size is fixed
    assert mismatch.status_code == 400


def test_a_chunked_last_body_ends_the_upload_where_it_ends(tus_server: ServerProcess) -> None:
    _, created = create(tus_server.url, 8, False, b"hel")
    url = _url(created)
    head = request_head("PATCH", url, {**append_headers(8, 3, True), "Transfer-Encoding": "chunked"})
    with raw_connect(url) as sock:
        sock.sendall(head + chunked_body([b"lo ", b"wor", b"ld"]))
        answer = read_answer(sock.makefile("rb"), "PATCH")
    assert answer.status == 204 and answer.headers["Upload-Complete"] == "?1"
    assert offset_of(url, 8).headers["Upload-Length"] == "11"
    assert requests.get(url, timeout=30).content == HELLO


@pytest.mark.parametrize("version", [3, 8])
def test_a_complete_request_without_any_body_framing_has_an_empty_body(tus_server: ServerProcess,
                                                                        version: int) -> None:
    """No Content-Length and no chunked coding means no body (RFC 9112): the upload is complete and empty."""
    with raw_connect(tus_server.url) as sock, sock.makefile("rb") as reader:
        sock.sendall(request_head("POST", tus_server.url, draft_headers(version, True)))
        answers = read_answers(reader, "POST")
        assert [a.status for a in answers] == [104, 201] and is_complete(answers[-1].headers, version)
        _, partial = create(tus_server.url, version, False, b"hello")
        sock.sendall(request_head("PATCH", _url(partial), append_headers(version, 5, True)))
        finished = read_answers(reader, "PATCH")
    assert finished[-1].status in (201, 204) and is_complete(finished[-1].headers, version)
    assert offset_of(_url(partial), version).headers["Upload-Length"] == "5"
    assert requests.get(_url(answers[-1]), timeout=30).content == b""


def test_a_creation_in_one_chunked_body(tus_server: ServerProcess) -> None:
    head = request_head("POST", tus_server.url, {**draft_headers(6, True), "Transfer-Encoding": "chunked"})
    with raw_connect(tus_server.url) as sock:
        sock.sendall(head + chunked_body([b"hello", b" world"]))
        reader = sock.makefile("rb")
        assert read_answer(reader, "POST").status == 104
        final = read_answer(reader, "POST")
    assert final.status == 201 and final.headers["Upload-Complete"] == "?1"
    assert requests.get(_url(final), timeout=30).content == HELLO


@pytest.mark.parametrize("version", [6, 7, 8])
def test_a_body_past_the_length_is_413_with_limits_and_records_nothing(tus_server: ServerProcess,
                                                                       version: int) -> None:
    _, created = create(tus_server.url, version, False, b"he", {"Upload-Length": "5"})
    url = _url(created)
    refused = append(url, version, 2, b"llo world", complete=False)
    assert refused.status_code == 413
    assert limits(refused.headers["Upload-Limit"])["max-size"] == 1024**3
    assert offset_of(url, version).headers["Upload-Offset"] == "2"
    assert append(url, version, 2, b"llo", complete=True).status_code in (201, 204)


def test_a_length_over_the_maximum_is_413_with_limits(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory("--max-size", "10")
    answers = exchange(server.url, "POST", draft_headers(7, True), HELLO)
    assert [a.status for a in answers] == [413]
    assert limits(answers[0].headers["Upload-Limit"]) == {"min-size": 0, "max-size": 10}


# ---- a finished upload ------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", range(3, 9))
def test_an_empty_last_append_to_a_finished_upload_is_answered_again(tus_server: ServerProcess,
                                                                    version: int) -> None:
    """The upload completes when its last byte arrives; a client that still sends an empty ?1 (tus-js-client
    does when HEAD showed no length) gets the completing answer again, not an error."""
    _, created = create(tus_server.url, version, False, HELLO, {"Upload-Length": "11"})
    url = _url(created)
    assert is_complete(offset_of(url, version).headers, version)
    again = append(url, version, 11, b"", complete=True)
    assert again.status_code in (201, 204) and is_complete(again.headers, version)
    assert again.headers["Upload-Offset"] == "11"


@pytest.mark.parametrize(("version", "status", "problem"), [
    (3, 400, None), (5, 400, None), (6, 400, "completed-upload"), (7, 400, "completed-upload"),
    (8, 400, "inconsistent-upload-length"),
])
def test_more_bytes_for_a_finished_upload(tus_server: ServerProcess, version: int, status: int,
                                          problem: str | None) -> None:
    _, created = create(tus_server.url, version, True, HELLO)
    refused = append(created.headers["Location"], version, 11, b"!", complete=True)
    assert refused.status_code == status
    if problem:
        assert refused.json()["type"] == f"https://iana.org/assignments/http-problem-types#{problem}"
    assert requests.get(_url(created), timeout=30).content == HELLO


def test_interop_8_answers_410_to_an_empty_append_at_another_offset(tus_server: ServerProcess) -> None:
    _, created = create(tus_server.url, 8, True, HELLO)
    refused = append(_url(created), 8, 4, b"", complete=True)
    assert refused.status_code == 410
    assert refused.json()["type"].endswith("#completed-upload")
    stale = append(_url(created), 6, 4, b"", complete=True)
    assert stale.status_code == 400 and stale.json()["type"].endswith("#completed-upload")


# ---- integrity: RFC 9530 digests, checked like tus's sha256 metadata and Upload-Checksum --------------------

@pytest.mark.parametrize("version", [5, 8])
def test_repr_digest_is_verified_before_publishing(tus_server: ServerProcess, version: int) -> None:
    good = {"Repr-Digest": f"sha-256={_sf(hashlib.sha256(HELLO).digest())}"}
    _, created = create(tus_server.url, version, False, b"hello", good)
    done = append(_url(created), version, 5, b" world", complete=True)
    assert done.status_code in (201, 204) and done.headers["Repr-Digest"] == good["Repr-Digest"]
    assert requests.get(_url(created), timeout=30).content == HELLO

    bad = {"Repr-Digest": f"sha-256={_sf(hashlib.sha256(b'other').digest())}"}
    _, created = create(tus_server.url, version, False, b"hello", bad)
    url = _url(created)
    failed = append(url, version, 5, b" world", complete=True)
    assert failed.status_code == 460 and "checksum mismatch" in failed.text
    assert requests.get(url, timeout=30).status_code in (404, 410)  # never published
    head = offset_of(url, version)
    assert head.status_code == (404 if version <= 6 else 410)


def test_repr_digest_on_a_whole_creation_and_its_conflict_with_metadata(tus_server: ServerProcess) -> None:
    wrong = f"sha-256={_sf(hashlib.sha256(b'nope').digest())}"
    interim, failed = create(tus_server.url, 7, True, HELLO, {"Repr-Digest": wrong})
    assert failed.status == 460 and failed.headers["Location"] == interim[0].headers["Location"]
    meta = "sha256 " + base64.b64encode(hashlib.sha256(HELLO).hexdigest().encode()).decode()
    right = f"sha-256={_sf(hashlib.sha256(HELLO).digest())}"
    _, agreed = create(tus_server.url, 7, True, HELLO, {"Repr-Digest": right, "Upload-Metadata": meta})
    assert agreed.status == 201
    _, conflict = create(tus_server.url, 7, True, HELLO, {"Repr-Digest": wrong, "Upload-Metadata": meta})
    assert conflict.status == 400 and "disagree" in conflict.body.decode()


def test_upload_metadata_sha256_is_honoured_in_draft_mode(tus_server: ServerProcess) -> None:
    """tus-js-client sends Upload-Metadata in its draft modes too: a declared sha256 there is verified."""
    meta = "sha256 " + base64.b64encode(b"0" * 64).decode()
    _, failed = create(tus_server.url, 6, True, HELLO, {"Upload-Metadata": meta})
    assert failed.status == 460


@pytest.mark.parametrize("algorithm", ["sha-256", "sha-512"])
def test_content_digest_checks_each_body(tus_server: ServerProcess, algorithm: str) -> None:
    hasher = {"sha-256": hashlib.sha256, "sha-512": hashlib.sha512}[algorithm]
    _, created = create(tus_server.url, 6, False, b"hello",
                        {"Content-Digest": f"{algorithm}={_sf(hasher(b'hello').digest())}"})
    url = _url(created)
    assert created.status == 201 and created.headers["Upload-Offset"] == "5"
    bad = append(url, 6, 5, b" world", complete=True,
                 headers={"Content-Digest": f"{algorithm}={_sf(hasher(b' earth').digest())}"})
    assert bad.status_code == 460
    assert offset_of(url, 6).headers["Upload-Offset"] == "5"  # the body was not appended
    good = append(url, 6, 5, b" world", complete=True,
                  headers={"Content-Digest": f"{algorithm}={_sf(hasher(b' world').digest())}, md5=:AAAA:"})
    assert good.status_code == 201
    assert requests.get(url, timeout=30).content == HELLO


# ---- metadata, post-processing ------------------------------------------------------------------------------

def test_content_type_and_disposition_describe_the_file(tus_server: ServerProcess) -> None:
    _, created = create(tus_server.url, 8, True, b"plain words\n", {
        "Content-Type": "text/plain; charset=utf-8",
        "Content-Disposition": "attachment; filename=\"x.txt\"; filename*=UTF-8''%E2%82%AC%20notes.txt"})
    url = _url(created)
    download = requests.get(url, timeout=30)
    assert download.headers["Content-Type"] == "text/plain"
    assert "filename*=UTF-8''%E2%82%AC%20notes.txt" in download.headers["Content-Disposition"]
    info = processed_info(url)  # published and post-processed like any tus upload
    assert info["filename"] == "€ notes.txt" and info["type"] == "text/plain"
    assert info["sha256"] == hashlib.sha256(b"plain words\n").hexdigest()


def test_application_partial_upload_is_not_a_file_type(tus_server: ServerProcess) -> None:
    _, created = create(tus_server.url, 6, True, b"%PDF-1.4 not really", {"Content-Type": "application/partial-upload"})
    assert requests.get(_url(created), timeout=30).headers["Content-Type"] == "application/octet-stream"


# ---- one upload, two protocols ------------------------------------------------------------------------------

def test_a_tus_upload_continued_with_the_draft_and_back(tus_server: ServerProcess) -> None:
    url = create_upload(tus_server.url, 11).headers["Location"]
    assert patch_upload(url, 0, b"hel").status_code == 204
    head = offset_of(url, 7)
    assert head.headers["Upload-Offset"] == "3" and head.headers["Upload-Complete"] == "?0"
    assert append(url, 7, 3, b"lo w", complete=False).status_code == 204
    assert requests.head(url, headers=TUS, timeout=30).headers["Upload-Offset"] == "7"
    assert patch_upload(url, 7, b"orld").status_code == 204
    assert is_complete(offset_of(url, 3).headers, 3)
    assert requests.get(url, timeout=30).content == HELLO


def test_a_draft_upload_of_unknown_length_finished_with_tus(tus_server: ServerProcess) -> None:
    _, created = create(tus_server.url, 6, False, b"hello")
    url = _url(created)
    tus_head = requests.head(url, headers=TUS, timeout=30)
    assert tus_head.headers["Upload-Defer-Length"] == "1" and tus_head.headers["Upload-Offset"] == "5"
    done = patch_upload(url, 5, b" world", {"Upload-Length": "11"})
    assert done.status_code == 204
    assert requests.get(url, timeout=30).content == HELLO


def test_where_the_protocols_disagree_the_draft_gets_a_clear_4xx(tus_server: ServerProcess) -> None:
    """A tus concatenation: the draft cannot create one, nor report the offset of a final still waiting."""
    answers = exchange(tus_server.url, "POST", {**draft_headers(6, False), "Upload-Concat": "partial"})
    assert [a.status for a in answers] == [400] and "tus 1.0 only" in answers[0].body.decode()
    partial = create_upload(tus_server.url, 5, headers={"Upload-Concat": "partial"}).headers["Location"]
    final = requests.post(tus_server.url, headers={**TUS, "Upload-Concat": f"final;{partial}"},
                          timeout=30).headers["Location"]
    head = offset_of(final, 7)
    assert head.status_code == 400
    assert append(final, 7, 0, b"x", complete=True).status_code == 403  # a final takes no bytes in either


# ---- concurrency, admission, expiry, CORS -------------------------------------------------------------------

def test_a_new_request_ends_a_hanging_append(tus_server: ServerProcess) -> None:
    """The draft recommends ending the earlier request: the hanging PATCH is stopped, its bytes kept, and
    the client resumes from what HEAD says without waiting for the old connection to time out."""
    _, created = create(tus_server.url, 7, False, b"", {"Upload-Length": "11"})
    url = _url(created)
    head = request_head("PATCH", url, {**append_headers(7, 0, True), "Content-Length": "11"})
    with raw_connect(url) as hanging, hanging.makefile("rb") as reader:
        hanging.sendall(head + b"hello")  # 6 bytes never follow
        retrieved = offset_of(url, 7)
        assert retrieved.status_code == 204
        offset = int(retrieved.headers["Upload-Offset"])
        assert offset in (0, 5)  # what the server had read of the hanging body when it stopped it
        assert reader.read() == b""  # the hanging request was ended (closed, no answer)
    assert append(url, 7, offset, HELLO[offset:], complete=True).status_code == 204
    assert requests.get(url, timeout=30).content == HELLO


def test_uploads_belong_to_their_token_in_both_protocols(server_factory: Callable[..., ServerProcess],
                                                         tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("t-ann ann\nt-bob bob\n")
    server = server_factory("--tokens", str(tokens))
    ann, bob = {"Authorization": "Bearer t-ann"}, {"Authorization": "Bearer t-bob"}
    _, created = create(server.url, 6, False, b"hello", ann)
    url = _url(created)
    assert requests.head(url, headers={**draft_headers(6), **bob}, timeout=30).status_code == 404
    assert requests.head(url, headers=draft_headers(6), timeout=30).status_code == 401
    assert requests.head(url, headers={**TUS, **ann}, timeout=30).headers["Upload-Offset"] == "5"
    assert append(url, 6, 5, b" world", complete=True, headers=bob).status_code == 404
    assert append(url, 6, 5, b" world", complete=True, headers=ann).status_code == 201


def test_the_expiry_is_the_max_age_limit(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory("--expire-after", "1h")
    _, created = create(server.url, 8, False, b"x")
    assert 3600 - 60 <= limits(created.headers["Upload-Limit"])["max-age"] <= 3600
    _, done = create(server.url, 8, True, b"x")
    assert "max-age" not in limits(done.headers["Upload-Limit"])  # a finished upload does not expire


def test_cors_covers_the_draft(tus_server: ServerProcess) -> None:
    origin = {"Origin": "https://app.example"}
    preflight = requests.options(tus_server.url, timeout=30, headers={
        **origin, "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "upload-draft-interop-version,upload-complete"})
    allowed = {h.strip().lower() for h in preflight.headers["Access-Control-Allow-Headers"].split(",")}
    assert {h.lower() for h in rufh.REQUEST_HEADERS} <= allowed
    assert "PUT" in preflight.headers["Access-Control-Allow-Methods"]
    _, created = create(tus_server.url, 6, False, b"x", origin)
    head = requests.head(_url(created), headers={**draft_headers(6), **origin}, timeout=30)
    exposed = {h.strip().lower() for h in head.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"upload-complete", "upload-incomplete", "upload-limit", "upload-offset", "upload-length",
            "upload-draft-interop-version", "repr-digest", "location"} <= exposed


def test_a_draft_creation_may_use_put_or_patch(tus_server: ServerProcess) -> None:
    for method in ("PUT", "PATCH"):
        answers = exchange(tus_server.url, method, draft_headers(7, True), HELLO)
        assert [a.status for a in answers] == [104, 201], method
        assert requests.get(answers[-1].headers["Location"], timeout=30).content == HELLO
    assert [a.status for a in exchange(tus_server.url, "DELETE", draft_headers(7))] == [405]


def test_an_append_may_be_a_post_overridden_to_patch(tus_server: ServerProcess) -> None:
    """tus-js-client's overridePatchMethod works in its draft modes too."""
    _, created = create(tus_server.url, 6, False, b"hello")
    url = _url(created)
    done = requests.post(url, data=b" world", timeout=30, headers={
        **append_headers(6, 5, True), "X-HTTP-Method-Override": "PATCH"})
    assert done.status_code == 201 and done.headers["Upload-Complete"] == "?1"
    assert requests.get(url, timeout=30).content == HELLO
    assert requests.post(url, data=b"x", headers=append_headers(6, 11, True), timeout=30).status_code == 405


def test_tus_offset_type_is_no_draft_append_type(tus_server: ServerProcess) -> None:
    _, created = create(tus_server.url, 6, False, b"hello")
    refused = append(_url(created), 6, 5, b"!", complete=True, headers={"Content-Type": OFFSET_TYPE})
    assert refused.status_code == 415

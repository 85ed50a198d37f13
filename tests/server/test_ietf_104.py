"""104 (Upload Resumption Supported) on a raw socket: sent before the body is read, only to a request whose
interop version the server speaks, never to HTTP/1.0, to tus requests or before admission fails."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from ietf_calls import HELLO, draft_headers, exchange, limits, open_creation, read_answer, read_answers

from tuskit import rufh

from support import TUS, ServerProcess


@pytest.mark.parametrize("version", range(3, 9))
def test_the_104_comes_before_the_body_is_sent(tus_server: ServerProcess, version: int) -> None:
    headers = {**draft_headers(version, True), "Content-Length": str(len(HELLO))}
    sock, reader = open_creation(tus_server.url, headers)
    with sock, reader:
        announced = read_answer(reader, "POST")  # nothing of the body has been sent yet
        assert announced.status == 104
        assert announced.headers["Upload-Draft-Interop-Version"] == str(version)
        location = announced.headers["Location"]
        assert location.startswith(tus_server.url) and len(location) == len(tus_server.url) + 32
        if version >= 6:
            limit = limits(announced.headers["Upload-Limit"])
            assert limit["min-size"] == 0 and ("expires" if version == 6 else "max-age") in limit
        else:
            assert "Upload-Limit" not in announced.headers
        sock.sendall(HELLO)
        final = read_answer(reader, "POST")
    assert final.status == 201
    assert final.headers["Location"] == location  # the same URL, byte for byte


def test_an_expect_100_continue_is_still_answered(tus_server: ServerProcess) -> None:
    """The 104 does not replace the 100: a client waiting for 100 gets it after the 104."""
    headers = {**draft_headers(8, True), "Content-Length": str(len(HELLO)), "Expect": "100-continue"}
    sock, reader = open_creation(tus_server.url, headers)
    with sock, reader:
        assert read_answer(reader, "POST").status == 104
        assert read_answer(reader, "POST").status == 100
        sock.sendall(HELLO)
        assert read_answer(reader, "POST").status == 201


def test_an_empty_creation_is_announced_too(tus_server: ServerProcess) -> None:
    answers = exchange(tus_server.url, "POST", draft_headers(6, False, **{"Upload-Length": "11"}))
    assert [a.status for a in answers] == [104, 201]


def test_no_1xx_for_http_1_0(tus_server: ServerProcess) -> None:
    answers = exchange(tus_server.url, "POST", draft_headers(6, True), HELLO, http_version="HTTP/1.0")
    assert [a.status for a in answers] == [201]
    assert answers[0].headers["Upload-Complete"] == "?1"


def test_no_1xx_for_tus_requests(tus_server: ServerProcess) -> None:
    answers = exchange(tus_server.url, "POST", {**TUS, "Upload-Length": "11",
                                                "Content-Type": "application/offset+octet-stream"}, HELLO)
    assert [a.status for a in answers] == [201]


@pytest.mark.parametrize("version", ["2", "9", "6.0", ""])
def test_no_1xx_for_a_version_the_server_does_not_speak(tus_server: ServerProcess, version: str) -> None:
    answers = exchange(tus_server.url, "POST", {rufh.INTEROP: version, "Upload-Complete": "?1"}, HELLO)
    assert [a.status for a in answers] == [412]


@pytest.mark.parametrize("headers", [
    {"Upload-Concat": "partial"},  # refused before anything is created
    {"Upload-Length": "5"},  # disagrees with the complete body's 11 bytes
    {"Upload-Offset": "3"},
    {"Upload-Length": str(2**31)},  # over --max-size
])
def test_no_104_when_creation_is_refused(tus_server: ServerProcess, headers: dict[str, str]) -> None:
    answers = exchange(tus_server.url, "POST", {**draft_headers(6, True), **headers}, HELLO)
    assert len(answers) == 1 and answers[0].status >= 400


def test_no_104_before_the_token_check_fails(server_factory: Callable[..., ServerProcess], tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("draft-token-1 dora\n")
    server = server_factory("--tokens", str(tokens))
    refused = exchange(server.url, "POST", draft_headers(6, True), HELLO)
    assert [a.status for a in refused] == [401]
    admitted = exchange(server.url, "POST", {**draft_headers(6, True), "Authorization": "Bearer draft-token-1"},
                        HELLO)
    assert [a.status for a in admitted] == [104, 201]


def test_no_104_to_a_rate_limited_request(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory("--rate-limit", "0.01", "--rate-burst", "1")
    assert [a.status for a in exchange(server.url, "POST", draft_headers(6, True), HELLO)] == [104, 201]
    refused = exchange(server.url, "POST", draft_headers(6, True), HELLO)
    assert [a.status for a in refused] == [429] and "Retry-After" in refused[0].headers


def test_keep_alive_after_a_104(tus_server: ServerProcess) -> None:
    """The interim response leaves the connection in step: a second request on it is answered normally."""
    sock, reader = open_creation(tus_server.url, {**draft_headers(7, True), "Content-Length": "11"})
    with sock, reader:
        sock.sendall(HELLO)
        first = read_answers(reader, "POST")
        assert [a.status for a in first] == [104, 201]
        url = first[-1].headers["Location"]
        path = url[url.index("/files/"):]
        sock.sendall(f"HEAD {path} HTTP/1.1\r\nHost: x\r\n{rufh.INTEROP}: 7\r\n\r\n".encode())
        again = read_answers(reader, "HEAD")
    assert [a.status for a in again] == [204] and again[0].headers["Upload-Offset"] == "11"

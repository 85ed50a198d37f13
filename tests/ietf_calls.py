"""The IETF draft over raw sockets: every response a request gets, 1xx included.

Python's http.client (and requests, tuspy) take a 104 for the final answer, and tuskit announces every
draft creation with one, so creations go through `exchange`; offset retrieval, appends and the rest
get no 1xx and may use requests.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

import requests
from requests.structures import CaseInsensitiveDict

from tuskit import rufh

from support import raw_connect, request_head

HELLO = b"hello world"


@dataclass
class Answer:
    status: int
    headers: CaseInsensitiveDict[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def read_answer(reader: BinaryIO, method: str) -> Answer:
    """One response (interim or final) off a socket's reader."""
    status_line = reader.readline()
    if not status_line:
        raise ConnectionError("connection closed before a response")
    version, status, *_ = status_line.decode("latin1").split(" ", 2)
    assert version.startswith("HTTP/1."), status_line
    headers: CaseInsensitiveDict[str] = CaseInsensitiveDict()
    while (line := reader.readline().decode("latin1").rstrip("\r\n")):
        name, _, value = line.partition(":")
        headers[name.strip()] = value.strip()
    code = int(status)
    length = int(headers.get("Content-Length", "0"))
    body = reader.read(length) if code >= 200 and method != "HEAD" and length else b""
    return Answer(code, headers, body)


def read_answers(reader: BinaryIO, method: str) -> list[Answer]:
    """Every response up to and including the final one."""
    answers = [read_answer(reader, method)]
    while answers[-1].status < 200:
        answers.append(read_answer(reader, method))
    return answers


def exchange(url: str, method: str, headers: Mapping[str, str], body: bytes = b"",
             http_version: str = "HTTP/1.1") -> list[Answer]:
    """Send one request whole and return every response to it (interim ones first)."""
    sent = {**headers, "Content-Length": str(len(body))} if body or method in ("POST", "PUT", "PATCH") else {**headers}
    head = request_head(method, url, sent)
    if http_version != "HTTP/1.1":
        head = head.replace(b" HTTP/1.1\r\n", f" {http_version}\r\n".encode(), 1)
    with raw_connect(url) as sock:
        sock.sendall(head + body)
        return read_answers(sock.makefile("rb"), method)


def draft_headers(version: int, complete: bool | None = None, **extra: str) -> dict[str, str]:
    """The interop version and, when given, the completeness field as that version spells it."""
    headers = {rufh.INTEROP: str(version)}
    if complete is not None:
        name, value = rufh.Draft(version).completeness(complete)
        headers[name] = value
    return {**headers, **{k.replace("_", "-"): v for k, v in extra.items()}}


def append_headers(version: int, offset: int, complete: bool | None, **extra: str) -> dict[str, str]:
    headers = draft_headers(version, complete, **{"Upload-Offset": str(offset)})
    if version >= 6:
        headers["Content-Type"] = rufh.PARTIAL_UPLOAD_TYPE
    return {**headers, **{k.replace("_", "-"): v for k, v in extra.items()}}


def create(endpoint: str, version: int, complete: bool, body: bytes = b"",
           headers: Mapping[str, str] | None = None) -> tuple[list[Answer], Answer]:
    """A draft creation: (the interim responses, the final one)."""
    answers = exchange(endpoint, "POST", {**draft_headers(version, complete), **(headers or {})}, body)
    return answers[:-1], answers[-1]


def append(url: str, version: int, offset: int, body: bytes, complete: bool | None,
           headers: Mapping[str, str] | None = None) -> requests.Response:
    return requests.patch(url, data=body, timeout=30,
                          headers={**append_headers(version, offset, complete), **(headers or {})})


def offset_of(url: str, version: int) -> requests.Response:
    return requests.head(url, headers=draft_headers(version), timeout=30)


def limits(value: str) -> dict[str, int]:
    """Upload-Limit parsed as the Dictionary it is (key order is free)."""
    return {key: member for key, (member, _) in rufh.parse_dictionary(value).items()}


def is_complete(headers: Mapping[str, str], version: int) -> bool:
    """The completeness field of a response, read as `version` spells it; it must be a Boolean."""
    name = rufh.Draft(version).complete_field
    value = headers[name]
    assert value in ("?0", "?1"), f"{name}: {value!r}"
    return (value == "?1") != (version == 3)


def open_creation(endpoint: str, headers: Mapping[str, str]) -> tuple[socket.socket, BinaryIO]:
    """Send a creation's header block and nothing of its body yet; the caller reads the 104 and goes on."""
    sock = raw_connect(endpoint)
    sock.sendall(request_head("POST", endpoint, dict(headers)))
    return sock, sock.makefile("rb")

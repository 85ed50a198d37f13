"""Every interop version of the IETF draft (3-8) over raw HTTP against a real server: creation whole and in
parts, a creation cut short and resumed, offset retrieval, 409s, cancellation, OPTIONS and the rules that
differ between versions. Creations go over raw sockets (they get a 104, which http.client cannot take).
"""

from __future__ import annotations

import base64
import hashlib

import pytest
import requests
from ietf_calls import (
    HELLO,
    append,
    create,
    draft_headers,
    exchange,
    is_complete,
    limits,
    offset_of,
    open_creation,
    read_answer,
)

from tuskit import rufh

from support import TUS, ServerProcess, poll

VERSIONS = range(3, 9)
ONE_GIB = 1024**3  # the shared server's --max-size


def _other_field(version: int) -> str:
    return "Upload-Complete" if version == 3 else "Upload-Incomplete"


@pytest.mark.parametrize("version", VERSIONS)
def test_creation_with_the_whole_upload(tus_server: ServerProcess, version: int) -> None:
    interim, final = create(tus_server.url, version, True, HELLO)
    assert [a.status for a in interim] == [104]
    assert interim[0].headers["Upload-Draft-Interop-Version"] == str(version)
    assert final.status == 201
    assert final.headers["Location"] == interim[0].headers["Location"]
    assert final.headers["Upload-Offset"] == "11"
    assert is_complete(final.headers, version)
    assert _other_field(version) not in final.headers
    assert "Tus-Resumable" not in final.headers
    assert final.headers["Upload-Draft-Interop-Version"] == str(version)  # which rules answered
    assert final.headers["Repr-Digest"] == "sha-256=:" + base64.b64encode(hashlib.sha256(HELLO).digest()).decode() + ":"
    assert requests.get(final.headers["Location"], timeout=30).content == HELLO
    head = offset_of(final.headers["Location"], version)
    assert head.status_code == 204 and head.headers["Upload-Offset"] == "11" and is_complete(head.headers, version)


@pytest.mark.parametrize("version", VERSIONS)
def test_creation_in_parts_then_appends(tus_server: ServerProcess, version: int) -> None:
    _, created = create(tus_server.url, version, False, b"hel")
    assert created.status == 201 and created.headers["Upload-Offset"] == "3"
    assert not is_complete(created.headers, version)
    url = created.headers["Location"]
    middle = append(url, version, 3, b"lo w", complete=False)
    assert middle.status_code == (201 if version <= 6 else 204)  # 3-6 name 201 even for a partial append
    assert middle.headers["Upload-Offset"] == "7" and not is_complete(middle.headers, version)
    last = append(url, version, 7, b"orld", complete=True)
    assert last.status_code == (201 if version <= 6 else 204)
    assert last.headers["Upload-Offset"] == "11" and is_complete(last.headers, version)
    assert _other_field(version) not in last.headers
    assert requests.get(url, timeout=30).content == HELLO


@pytest.mark.parametrize("version", VERSIONS)
def test_a_creation_cut_short_is_resumed_from_offset_retrieval(tus_server: ServerProcess, version: int) -> None:
    """The client loses its connection after the 104 and 5 bytes: what arrived is kept, HEAD tells it."""
    headers = {**draft_headers(version, True), "Content-Length": str(len(HELLO))}
    sock, reader = open_creation(tus_server.url, headers)
    with sock, reader:  # the connection ends when both are closed
        announced = read_answer(reader, "POST")
        assert announced.status == 104
        sock.sendall(HELLO[:5])
    url = announced.headers["Location"]
    # a HEAD sent before the server saw the disconnect would end the creation itself, maybe before it read
    # the 5 bytes: wait for the server's word that it kept them
    saved = f"upload {url.rsplit('/', 1)[1]}: client disconnected; kept 5 bytes"
    poll(lambda: any(saved in line for line in tus_server.output), what="the server to keep the 5 bytes")
    head = offset_of(url, version)
    assert head.headers["Upload-Offset"] == "5"
    assert head.status_code == 204 and not is_complete(head.headers, version)
    assert head.headers["Cache-Control"] == "no-store"
    assert head.headers["Upload-Length"] == "11"  # ?1 with Content-Length fixed the size
    resumed = append(url, version, 5, HELLO[5:], complete=True)
    assert resumed.status_code in (201, 204) and resumed.headers["Upload-Offset"] == "11"
    assert requests.get(url, timeout=30).content == HELLO


@pytest.mark.parametrize("version", VERSIONS)
def test_offset_retrieval_speaks_the_version(tus_server: ServerProcess, version: int) -> None:
    _, created = create(tus_server.url, version, False, b"hello", {"Upload-Length": "11"})
    head = offset_of(created.headers["Location"], version)
    assert head.status_code == 204
    assert head.headers["Upload-Offset"] == "5"
    assert head.headers[rufh.Draft(version).complete_field] == ("?1" if version == 3 else "?0")
    assert _other_field(version) not in head.headers
    assert head.headers["Upload-Length"] == "11"
    assert head.headers["Cache-Control"] == "no-store"
    assert not [name for name in head.headers if name.lower().startswith("tus-")]
    if version < 6:
        assert "Upload-Limit" not in head.headers
        return
    limit = limits(head.headers["Upload-Limit"])
    lifetime = "expires" if version == 6 else "max-age"
    assert set(limit) == {"min-size", "max-size", lifetime}  # never the other lifetime key
    assert limit["min-size"] == 0 and limit["max-size"] == ONE_GIB
    assert 86_400 - 60 <= limit[lifetime] <= 86_400  # the server's default expiry, as a limit


@pytest.mark.parametrize("version", VERSIONS)
def test_limits_on_creation_and_the_104(tus_server: ServerProcess, version: int) -> None:
    interim, final = create(tus_server.url, version, False)
    if version < 6:
        assert "Upload-Limit" not in interim[0].headers and "Upload-Limit" not in final.headers
        return
    for answer in (interim[0], final):
        limit = limits(answer.headers["Upload-Limit"])
        assert limit["max-size"] == ONE_GIB and limit["min-size"] == 0
        assert ("expires" in limit) == (version == 6) and ("max-age" in limit) == (version >= 7)


@pytest.mark.parametrize("version", VERSIONS)
def test_a_mismatched_offset_is_409_with_the_right_offset(tus_server: ServerProcess, version: int) -> None:
    _, created = create(tus_server.url, version, False, b"hello")
    url = created.headers["Location"]
    refused = append(url, version, 3, b"xx", complete=False)
    assert refused.status_code == 409
    assert refused.headers["Upload-Offset"] == "5"
    if version >= 6:
        assert refused.headers["Content-Type"] == "application/problem+json"
        problem = refused.json()
        assert problem["type"] == "https://iana.org/assignments/http-problem-types#mismatching-upload-offset"
        assert (problem["expected-offset"], problem["provided-offset"]) == (5, 3)
    else:
        assert refused.headers["Content-Type"].startswith("text/plain")
    if version >= 7:
        assert refused.headers["Upload-Complete"] == "?0"  # every answer to a non-completing append says so
    assert offset_of(url, version).headers["Upload-Offset"] == "5"


@pytest.mark.parametrize("version", VERSIONS)
def test_cancellation(tus_server: ServerProcess, version: int) -> None:
    _, created = create(tus_server.url, version, False, b"hello")
    url = created.headers["Location"]
    gone = requests.delete(url, headers=draft_headers(version), timeout=30)
    assert gone.status_code == 204
    after = offset_of(url, version)
    assert after.status_code == (404 if version <= 6 else 410)  # 3-6 name 404 for an inactive upload
    unknown = requests.delete(tus_server.url + "0" * 32, headers=draft_headers(version), timeout=30)
    assert unknown.status_code == 404


@pytest.mark.parametrize("version", VERSIONS)
def test_state_fields_on_head_and_delete(tus_server: ServerProcess, version: int) -> None:
    """3-6 refuse a HEAD or DELETE carrying the upload's state fields; 7 and 8 dropped the rule."""
    _, created = create(tus_server.url, version, False, b"hello")
    url = created.headers["Location"]
    strays = [{"Upload-Offset": "5"}, dict([rufh.Draft(version).completeness(False)])]
    if version == 6:
        strays.append({"Upload-Length": "11"})
    for stray in strays:
        headers = {**draft_headers(version), **stray}
        expected = 400 if version <= 6 else 204
        assert requests.head(url, headers=headers, timeout=30).status_code == expected, stray
    assert requests.delete(url, headers={**draft_headers(version), "Upload-Offset": "5"},
                           timeout=30).status_code == (400 if version <= 6 else 204)


@pytest.mark.parametrize("version", VERSIONS)
def test_append_media_type(tus_server: ServerProcess, version: int) -> None:
    """From 6 an append's body is application/partial-upload (415 otherwise); 3-5 name no type."""
    _, created = create(tus_server.url, version, False, b"hello")
    url = created.headers["Location"]
    plain = append(url, version, 5, b" ", complete=False, headers={"Content-Type": "application/octet-stream"})
    if version >= 6:
        assert plain.status_code == 415
        assert offset_of(url, version).headers["Upload-Offset"] == "5"
    else:
        assert plain.status_code == 201 and plain.headers["Upload-Offset"] == "6"


@pytest.mark.parametrize("version", VERSIONS)
def test_an_append_without_completeness(tus_server: ServerProcess, version: int) -> None:
    """3-6: a body that does not say ends the upload; 7 and 8 require Upload-Complete on every append."""
    _, created = create(tus_server.url, version, False, b"hello")
    url = created.headers["Location"]
    silent = append(url, version, 5, b" world", complete=None)
    if version <= 6:
        assert silent.status_code == 201 and is_complete(silent.headers, version)
        assert requests.get(url, timeout=30).content == HELLO
    else:
        assert silent.status_code == 400 and "Upload-Complete" in silent.text
        assert offset_of(url, version).headers["Upload-Offset"] == "5"


@pytest.mark.parametrize("version", VERSIONS)
def test_options(tus_server: ServerProcess, version: int) -> None:
    response = requests.options(tus_server.url, headers=draft_headers(version), timeout=30)
    assert response.status_code == 200
    assert response.headers["Accept-Patch"] == "application/partial-upload"
    assert response.headers["Tus-Version"] == "1.0.0"  # tus discovery stays: it harms no draft client
    if version >= 6:
        assert limits(response.headers["Upload-Limit"]) == {"min-size": 0, "max-size": ONE_GIB}  # no lifetime yet
    else:
        assert "Upload-Limit" not in response.headers


@pytest.mark.parametrize("version", VERSIONS)
def test_creation_must_say_whether_it_is_complete(tus_server: ServerProcess, version: int) -> None:
    answers = exchange(tus_server.url, "POST", draft_headers(version), HELLO)
    assert [a.status for a in answers] == [400]  # refused before anything exists: no 104
    assert rufh.Draft(version).complete_field in answers[0].body.decode()


@pytest.mark.parametrize("value", ["2", "9", '"6"', "6.0", "six"])
def test_other_interop_values_are_tus_requests(tus_server: ServerProcess, value: str) -> None:
    answers = exchange(tus_server.url, "POST", {"Upload-Draft-Interop-Version": value, "Upload-Complete": "?1"},
                       HELLO)
    assert [a.status for a in answers] == [412]  # tus's answer to a request without Tus-Resumable
    assert answers[0].headers["Tus-Version"] == "1.0.0" and "Upload-Complete" not in answers[0].headers


@pytest.mark.parametrize(("name", "value"), [
    ("Upload-Complete", "true"), ("Upload-Complete", "1"), ("Upload-Complete", "?1, ?0"),
    ("Upload-Offset", "+5"), ("Upload-Offset", "5, 5"), ("Upload-Offset", "1" * 16), ("Upload-Offset", "5.0"),
])
def test_structured_field_junk_is_400(tus_server: ServerProcess, name: str, value: str) -> None:
    _, created = create(tus_server.url, 6, False, b"hello")
    url = created.headers["Location"]
    headers = {"Upload-Complete": "?0", "Upload-Offset": "5", name: value}
    refused = append(url, 6, 5, b"!", complete=None, headers=headers)
    assert refused.status_code == 400 and name in refused.text
    assert offset_of(url, 6).headers["Upload-Offset"] == "5"


def test_interop_8_ignores_an_invalid_field_instead_of_refusing_it(tus_server: ServerProcess) -> None:
    """From -09 an invalid structured field is ignored: a junk Upload-Length on creation is as if absent."""
    _, created = create(tus_server.url, 8, False, b"hello", {"Upload-Length": "-11"})
    assert created.status == 201
    assert "Upload-Length" not in offset_of(created.headers["Location"], 8).headers
    _, strict = create(tus_server.url, 7, False, b"hello", {"Upload-Length": "-11"})
    assert strict.status == 400


def test_interop_3_never_says_upload_complete(tus_server: ServerProcess) -> None:
    interim, final = create(tus_server.url, 3, False, b"hel")
    url = final.headers["Location"]
    answers = [interim[0].headers, final.headers, offset_of(url, 3).headers,
               append(url, 3, 3, b"lo world", complete=True).headers, offset_of(url, 3).headers]
    assert all("Upload-Complete" not in headers for headers in answers)
    assert [h.get("Upload-Incomplete") for h in answers] == [None, "?1", "?1", "?0", "?0"]


def test_tus_requests_never_see_the_draft(tus_server: ServerProcess) -> None:
    created = requests.post(tus_server.url, headers={**TUS, "Upload-Length": "3"}, timeout=30)
    url = created.headers["Location"]
    for response in (created, requests.head(url, headers=TUS, timeout=30)):
        assert not {"Upload-Complete", "Upload-Incomplete", "Upload-Limit", "Upload-Draft-Interop-Version"} & set(
            response.headers)

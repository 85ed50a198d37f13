"""Bearer tokens map to owners: without one every request but a preflight is 401, and an upload is
invisible (404) to every other owner, whichever way they reach it (HEAD, PATCH, GET, info, DELETE,
Upload-Concat, /events)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from tus_calls import create, patch, poll, sse_events, upload

from tuskit.server.http.auth import TokenTable

from support import TUS, ServerProcess, start_server

ALICE = {"Authorization": "Bearer alice-token-5d1e"}
BOB = {"Authorization": "bearer bob-token-93aa"}  # the scheme is case-insensitive


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("auth")
    tokens = data / "tokens.txt"
    tokens.write_text("# token owner\nalice-token-5d1e alice\nbob-token-93aa  bob   # the second user\n")
    srv = start_server(data / "server", env={"TUSKIT_TOKENS": str(tokens)})  # the environment form of --tokens
    yield srv
    srv.stop()


def test_requests_without_a_valid_token_get_401(server: ServerProcess) -> None:
    url = upload(server.url, b"secret bytes", ALICE)
    for method, target, headers in [
        ("POST", server.url, {**TUS, "Upload-Length": "3"}),
        ("HEAD", url, TUS),
        ("GET", url, {}),
        ("GET", url + "/info", {}),
        ("DELETE", url, TUS),
        ("GET", server.origin + "/metrics", {}),
        ("GET", server.origin + "/events", {}),
        ("HEAD", url, {**TUS, "Authorization": "Bearer wrong"}),
        ("HEAD", url, {**TUS, "Authorization": "Basic YWxpY2U6cHc="}),
    ]:
        response = requests.request(method, target, headers=headers, timeout=10)
        assert response.status_code == 401, (method, target, headers)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert requests.head(url, headers={**TUS, **ALICE}, timeout=10).status_code == 200


def test_preflight_and_health_need_no_token(server: ServerProcess) -> None:
    preflight = requests.options(server.url, headers={"Origin": "https://app.example",
                                                      "Access-Control-Request-Method": "PATCH",
                                                      "Access-Control-Request-Headers": "authorization"}, timeout=10)
    assert preflight.status_code == 200
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    assert requests.get(server.origin + "/healthz", timeout=10).status_code == 200


def test_uploads_are_invisible_to_other_owners(server: ServerProcess) -> None:
    url = upload(server.url, b"alice's photo", ALICE, filename="a.jpg")
    unknown = url[:-32] + "0" * 32
    for target in (url, unknown):  # bob cannot tell alice's upload from one that does not exist
        assert requests.head(target, headers={**TUS, **BOB}, timeout=10).status_code == 404
        assert requests.get(target, headers=BOB, timeout=10).status_code == 404
        assert requests.get(target + "/info", headers=BOB, timeout=10).status_code == 404
        assert patch(target, 13, b"x", BOB).status_code == 404
        assert requests.delete(target, headers={**TUS, **BOB}, timeout=10).status_code == 404
    assert requests.get(url, headers=ALICE, timeout=10).content == b"alice's photo"


def test_concatenation_cannot_reach_another_owners_partials(server: ServerProcess) -> None:
    partial = create(server.url, 5, {**ALICE, "Upload-Concat": "partial"}).headers["Location"]
    assert patch(partial, 0, b"hello", ALICE).status_code == 204
    unknown = partial[:-32] + "f" * 32

    def final(by: dict[str, str], part: str) -> requests.Response:
        return requests.post(server.url, headers={**TUS, **by, "Upload-Concat": f"final;{part}"}, timeout=10)

    stolen, missing = final(BOB, partial), final(BOB, unknown)
    assert stolen.status_code >= 400
    # the same answer as for a partial that does not exist: nothing tells bob it is there
    assert (stolen.status_code, stolen.text.replace(partial[-32:], "ID")) == \
        (missing.status_code, missing.text.replace(unknown[-32:], "ID"))
    mine = final(ALICE, partial)
    assert mine.status_code == 201
    assert poll(lambda: requests.get(mine.headers["Location"], headers=ALICE, timeout=10).content == b"hello")


def test_events_are_filtered_to_the_callers_uploads(server: ServerProcess) -> None:
    alice_url = upload(server.url, b"from alice", ALICE)
    bob_url = upload(server.url, b"from bob", BOB)
    alice_id, bob_id = alice_url[-32:], bob_url[-32:]
    # replay the whole stream as bob, with the token in the query as a browser's EventSource must
    with requests.get(server.origin + "/events", params={"access_token": "bob-token-93aa"},
                      headers={"Last-Event-ID": "0-0"}, stream=True, timeout=10) as stream:
        seen: list[dict[str, object]] = []
        for _id, event in sse_events(stream):
            seen.append(event)
            if event["id"] == bob_id and event["type"] == "verified":
                break
    assert seen and all(e["owner"] == "bob" for e in seen)
    assert alice_id not in {e["id"] for e in seen}


@pytest.mark.parametrize(("text", "reason"), [
    ("only-a-token\n", "expected 'TOKEN OWNER'"),
    ("t1 alice\nt1 bob\n", "listed twice"),
    ("# nothing but comments\n", "no tokens"),
])
def test_a_bad_tokens_file_is_refused_with_its_line(tmp_path: Path, text: str, reason: str) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(text)
    with pytest.raises(ValueError, match=reason):
        TokenTable.load(tokens)

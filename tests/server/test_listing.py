"""`GET /uploads`: each owner's uploads, newest first, in pages that neither skip nor repeat; gone uploads
drop out; without --tokens the listing is off unless the operator opts in with --public-listing."""

from __future__ import annotations

import asyncio
import hashlib
import io
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import requests
from PIL import Image
from tus_calls import create, patch, upload

from tuskit.server.core.model import ACTIVE, Upload
from tuskit.server.redis import keys
from tuskit.server.redis.state import RedisStateStore

from support import TUS, ServerProcess, b64, create_upload, poll, start_server

ALICE = {"Authorization": "Bearer alice-list-7c1"}
BOB = {"Authorization": "Bearer bob-list-02f"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("listing")
    tokens = data / "tokens.txt"
    tokens.write_text("alice-list-7c1 alice\nbob-list-02f bob\n")
    srv = start_server(data / "server", "--tokens", str(tokens))
    yield srv
    srv.stop()


def listing(server: ServerProcess, headers: dict[str, str], **query: Any) -> requests.Response:
    return requests.get(server.origin + "/uploads", params=query, headers=headers, timeout=10)


def all_pages(server: ServerProcess, headers: dict[str, str], limit: int) -> list[list[dict[str, Any]]]:
    pages, cursor = [], None
    while True:
        answer = listing(server, headers, limit=limit, **({"cursor": cursor} if cursor else {}))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        pages.append(body["uploads"])
        cursor = body["next"]
        if cursor is None:
            return pages


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "orange").save(buffer, "PNG")
    return buffer.getvalue()


def test_each_owner_lists_its_own_uploads_newest_first_in_pages(server: ServerProcess) -> None:
    mine = [upload(server.url, f"alice {n}".encode(), ALICE, filename=f"a{n}.txt") for n in range(5)]
    theirs = [upload(server.url, f"bob {n}".encode(), BOB, filename=f"b{n}.txt") for n in range(2)]

    pages = all_pages(server, ALICE, limit=2)
    assert [len(page) for page in pages] == [2, 2, 1]
    listed = [item["url"] for page in pages for item in page]
    assert listed == mine[::-1]
    created = [item["created"] for page in pages for item in page]
    assert created == sorted(created, reverse=True)
    assert [item["url"] for item in listing(server, BOB).json()["uploads"]] == theirs[::-1]

    assert listing(server, {}).status_code == 401
    assert listing(server, {"Authorization": "Bearer nobody"}).status_code == 401


def test_uploads_made_while_paging_are_neither_skipped_nor_repeated(server: ServerProcess) -> None:
    headers = {"Authorization": "Bearer bob-list-02f"}
    before = {item["url"] for page in all_pages(server, headers, limit=100) for item in page}
    older = [upload(server.url, f"older {n}".encode(), headers) for n in range(4)]
    first = listing(server, headers, limit=2).json()
    newer = upload(server.url, b"arrives between pages", headers)
    rest = all_pages_from(server, headers, first["next"])
    seen = [item["url"] for item in first["uploads"]] + [item["url"] for item in rest]
    assert seen[:4] == older[::-1] and len(seen) == len(set(seen))
    assert set(seen) == before | set(older)  # the newer one belongs on the first page, not on later ones
    assert listing(server, headers, limit=1).json()["uploads"][0]["url"] == newer


def all_pages_from(server: ServerProcess, headers: dict[str, str], cursor: str | None) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    while cursor:
        body = listing(server, headers, limit=2, cursor=cursor).json()
        items += body["uploads"]
        cursor = body["next"]
    return items


def test_items_say_what_arrived_and_info_shows_the_relative_path(server: ServerProcess) -> None:
    headers = {"Authorization": "Bearer alice-list-7c1"}
    image = png(400, 300)
    photo = upload(server.url, image, headers, filename="sunset.png", relativePath="holiday/day 1/sunset.png")

    def processed() -> dict[str, Any] | None:
        item = next(i for i in listing(server, headers, limit=5).json()["uploads"] if i["url"] == photo)
        return item if item["state"] == "processed" else None

    item = poll(processed, what="the photo to be processed")
    assert item["id"] == photo[-32:] and item["filename"] == "sunset.png"
    assert item["relativePath"] == "holiday/day 1/sunset.png"
    assert item["size"] == item["offset"] == len(image)
    assert item["sha256"] == hashlib.sha256(image).hexdigest() and item["type"] == "image/png"
    assert item["created"] <= item["finished"] <= time.time() and item["reason"] is None
    assert item["thumbnail"] == f"{photo}/thumbnail?size=256"
    thumb = requests.get(item["thumbnail"], headers=headers, timeout=10)
    assert thumb.status_code == 200 and thumb.headers["Content-Type"] == "image/webp"
    assert Image.open(io.BytesIO(thumb.content)).size == (256, 192)
    info = requests.get(photo + "/info", headers=headers, timeout=10).json()
    assert info["relativePath"] == "holiday/day 1/sunset.png" and info["state"] == "processed"

    unfinished = create(server.url, 100, headers, filename="half.bin").headers["Location"]
    assert patch(unfinished, 0, b"x" * 40, headers).status_code == 204
    newest = listing(server, headers, limit=1).json()["uploads"][0]
    assert newest["url"] == unfinished and newest["state"] == "uploading"
    assert (newest["offset"], newest["size"], newest["sha256"], newest["type"]) == (40, 100, None, None)
    assert newest["relativePath"] is None and newest["finished"] is None and newest["thumbnail"] is None


def test_uppys_null_relative_path_means_none(server: ServerProcess) -> None:
    url = upload(server.url, b"picked, not from a folder", ALICE, filename="note.txt", relativePath="null")
    assert requests.get(url + "/info", headers=ALICE, timeout=10).json()["relativePath"] is None


def test_failed_uploads_are_listed_with_the_reason_and_gone_ones_drop_out(server: ServerProcess) -> None:
    headers = {"Authorization": "Bearer bob-list-02f"}
    wrong = "0" * 64
    failed = create_upload(server.url, 5, metadata=f"filename {b64('bad.txt')},sha256 {b64(wrong)}",
                           headers=headers).headers["Location"]
    assert patch(failed, 0, b"hello", headers).status_code == 460
    item = listing(server, headers, limit=1).json()["uploads"][0]
    assert item["url"] == failed and item["state"] == "failed"
    assert wrong in item["reason"] and item["sha256"] == hashlib.sha256(b"hello").hexdigest()

    doomed = upload(server.url, b"to be deleted", headers)
    assert listing(server, headers, limit=1).json()["uploads"][0]["url"] == doomed
    assert requests.delete(doomed, headers={**TUS, **headers}, timeout=10).status_code == 204
    assert doomed not in {i["url"] for page in all_pages(server, headers, limit=50) for i in page}


def test_partials_are_not_listed_but_their_final_is(server: ServerProcess) -> None:
    parts = []
    for piece in (b"first half, ", b"second half"):
        url = requests.post(server.url, headers={**TUS, **ALICE, "Upload-Length": str(len(piece)),
                                                  "Upload-Concat": "partial"}, timeout=10).headers["Location"]
        assert patch(url, 0, piece, ALICE).status_code == 204
        parts.append(url)
    final = requests.post(server.url, headers={**TUS, **ALICE, "Upload-Concat": "final;" + " ".join(parts)},
                          timeout=10).headers["Location"]
    urls = [i["url"] for i in listing(server, ALICE, limit=3).json()["uploads"]]
    assert urls[0] == final and not set(parts) & set(urls)


@pytest.mark.parametrize(("query", "reason"), [
    ({"limit": "0"}, "limit must be between 1 and 500"),
    ({"limit": "501"}, "limit must be between 1 and 500"),
    ({"limit": "ten"}, "limit must be an integer"),
    ({"cursor": "not-a-cursor"}, "cursor is not one this server handed out"),
    ({"cursor": b64("1.5 ../../etc").rstrip("=")}, "cursor is not one this server handed out"),
    ({"cursor": b64("nan " + "a" * 32).rstrip("=")}, "cursor is not one this server handed out"),
])
def test_bad_limits_and_cursors_are_refused(server: ServerProcess, query: dict[str, str], reason: str) -> None:
    answer = listing(server, ALICE, **query)
    assert answer.status_code == 400 and answer.text.strip() == reason


def test_without_tokens_the_listing_is_off_unless_public(server_factory: Callable[..., ServerProcess]) -> None:
    closed = server_factory()
    upload(closed.url, b"an id is a capability")
    refused = requests.get(closed.origin + "/uploads", timeout=10)
    assert refused.status_code == 403 and "--public-listing" in refused.text

    public = server_factory("--public-listing")
    url = upload(public.url, b"listed for anyone")
    assert [i["url"] for i in requests.get(public.origin + "/uploads", timeout=10).json()["uploads"]] == [url]


# ---- the index itself, on a real redis ----------------------------------------------------------------

def _upload(upload_id: str, created: float, owner: str = "carol", concat: str = "") -> Upload:
    return Upload(id=upload_id, offset=0, length=1, metadata="", concat=concat, parts=(), owner=owner,
                  created=created, expires=None, status=ACTIVE, sha256="", reason="", finished=None)


def test_uploads_created_at_the_same_instant_page_by_id(redis_url: str) -> None:
    async def scenario() -> None:
        client = aioredis.from_url(redis_url)
        state = RedisStateStore(client)
        same = [f"{n:032x}" for n in range(1, 8)]
        for upload_id in same:
            await state.create(_upload(upload_id, 1700000000.25))
        await state.create(_upload("f" * 32, 1700000001.5))  # newer
        await state.create(_upload("e" * 32, 1699999999.0))  # older
        seen: list[str] = []
        after = None
        while True:
            page, after = await state.owned("carol", 3, after)
            seen += [u.id for u in page]
            if after is None:
                break
        assert seen == ["f" * 32, *sorted(same, reverse=True), "e" * 32]

        await client.delete(keys.upload(same[0]))  # a record Redis lost: it leaves the index when met
        page, _ = await state.owned("carol", 100, None)
        assert same[0] not in [u.id for u in page]
        assert await client.zscore(keys.owned("carol"), same[0]) is None
        await state.bury(same[1], "terminated", "upload was terminated")
        assert await client.zscore(keys.owned("carol"), same[1]) is None
        await state.note_processed(same[0], "image/png", (256,))  # never recreates a record that is gone
        assert not await client.exists(keys.upload(same[0]))
        await client.aclose()

    asyncio.run(scenario())


def test_a_server_that_restarts_keeps_the_listing(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "data", "--public-listing")
    try:
        url = upload(srv.url, b"still here after a restart")
    finally:
        srv.stop()
    again = start_server(tmp_path / "data", "--public-listing")
    try:
        assert [i["url"].rsplit("/", 1)[1] for i in requests.get(again.origin + "/uploads", timeout=10)
                .json()["uploads"]] == [url.rsplit("/", 1)[1]]
    finally:
        again.stop()

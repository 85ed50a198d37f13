"""The expiry sweeper deletes unfinished uploads past Upload-Expires (bytes and state), announces them,
and leaves finished uploads alone; requests for a swept upload get 410."""

from __future__ import annotations

from collections.abc import Callable

import requests
from storage import Storage
from tus_calls import create, patch, poll, sse_events, upload

from support import TUS, ServerProcess


def test_expired_unfinished_uploads_are_swept(server_factory: Callable[..., ServerProcess], storage: Storage) -> None:
    srv = server_factory("--expire-after", "1s", "--sweep-interval", "0.2s", "--list-without-tokens")
    url = create(srv.url, 100).headers["Location"]
    response = patch(url, 0, b"x" * 40)
    assert response.status_code == 204 and "Upload-Expires" in response.headers
    done = upload(srv.url, b"finished uploads never expire")
    assert storage.holds(srv, url[-32:])

    poll(lambda: not storage.holds(srv, url[-32:]), timeout=30)  # nothing of it is left behind
    gone = requests.head(url, headers=TUS, timeout=10)
    assert gone.status_code == 410
    assert patch(url, 40, b"y" * 60).status_code == 410
    assert requests.get(done, timeout=10).content == b"finished uploads never expire"
    assert storage.holds(srv, done[-32:])

    with requests.get(srv.origin + "/events", headers={"Last-Event-ID": "0-0"}, stream=True, timeout=30) as stream:
        for _id, event in sse_events(stream):
            if event["type"] == "expired":
                assert event["id"] == url[-32:]
                break

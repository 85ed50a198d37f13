"""`GET {base}{id}/info`: what arrived, as JSON, from the first byte to the finished, analysed file."""

from __future__ import annotations

import hashlib
import time

import requests
from tus_calls import create, patch, processed_info

from support import TUS, ServerProcess


def test_info_while_uploading_and_after(tus_server: ServerProcess) -> None:
    started = time.time()
    data = b"what arrived, and when\n" * 100
    url = create(tus_server.url, len(data), filename="log.txt").headers["Location"]
    assert patch(url, 0, data[:1000]).status_code == 204

    early = requests.get(url + "/info", timeout=10)
    assert early.status_code == 200 and early.headers["Content-Type"].startswith("application/json")
    info = early.json()
    assert info["id"] == url[-32:] and info["url"] == url
    assert info["filename"] == "log.txt" and info["size"] == len(data) and info["offset"] == 1000
    assert info["state"] == "uploading" and info["finished"] is None and info["sha256"] is None
    assert info["type"] is None and started - 5 < info["created"] <= time.time()

    assert patch(url, 1000, data[1000:]).status_code == 204
    done = processed_info(url)
    assert done["offset"] == done["size"] == len(data)
    assert done["sha256"] == hashlib.sha256(data).hexdigest()
    assert done["type"] == "text/plain"
    assert done["created"] <= done["finished"] <= time.time()
    assert "width" not in done and "thumbnails" not in done


def test_info_of_unknown_and_terminated_uploads(tus_server: ServerProcess) -> None:
    assert requests.get(tus_server.url + "0" * 32 + "/info", timeout=10).status_code == 404
    assert requests.get(tus_server.url + "not-an-id/info", timeout=10).status_code == 404
    url = create(tus_server.url, 10).headers["Location"]
    assert requests.delete(url, headers=TUS, timeout=10).status_code == 204
    gone = requests.get(url + "/info", timeout=10)
    assert gone.status_code == 410 and "terminated" in gone.text

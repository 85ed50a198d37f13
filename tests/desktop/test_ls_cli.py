"""`tuskit ls` against a real tuskit server: only the token's own uploads, newest first, page after page."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests
from cli_support import run_tuskit

from tuskit.desktop.client.listing import ListingError, list_uploads, listing_url
from tuskit.desktop.ui.formatting import NONE_MARK
from tuskit.desktop.ui.listing import listing_lines

from support import ServerProcess


@pytest.fixture
def owned(tmp_path: Path, server_factory: Any) -> ServerProcess:
    """A server with two owners; alice uploads a folder of five files one after the other, bob one file."""
    tokens = tmp_path / "tokens"
    tokens.write_text("alice-token alice\nbob-token bob\n")
    server = server_factory("--tokens", str(tokens))
    if requests.get(listing_url(server.url), timeout=10).status_code == 404:
        pytest.skip("this server has no GET /uploads listing yet (it comes with the server side of issue 13)")
    root = tmp_path / "alice"
    (root / "sub").mkdir(parents=True)
    for n in range(5):
        (root / ("sub" if n % 2 else "") / f"f{n}.txt").write_bytes(f"file {n}\n".encode() * (n + 1))
    alice = run_tuskit(tmp_path, "upload", str(root), "--server", server.url, "--token", "alice-token", "--jobs", "1")
    assert alice.returncode == 0, alice.stdout + alice.stderr
    theirs = tmp_path / "bob.txt"
    theirs.write_bytes(b"not alice's")
    bob = run_tuskit(tmp_path, "upload", str(theirs), "--server", server.url, "--token", "bob-token")
    assert bob.returncode == 0, bob.stdout + bob.stderr
    return server


def test_ls_lists_the_tokens_own_uploads_newest_first_as_a_table_and_as_json(tmp_path: Path,
                                                                             owned: ServerProcess) -> None:
    listed = run_tuskit(tmp_path, "ls", "--server", owned.url, "--token", "alice-token", "--json")
    assert listed.returncode == 0, listed.stderr
    uploads = json.loads(listed.stdout)["uploads"]
    assert sorted(u["relativePath"] for u in uploads) == ["f0.txt", "f2.txt", "f4.txt", "sub/f1.txt", "sub/f3.txt"]
    assert [u["created"] for u in uploads] == sorted((u["created"] for u in uploads), reverse=True)
    assert all(u["size"] == u["offset"] and len(u["sha256"]) == 64 for u in uploads)

    table = run_tuskit(tmp_path, "ls", "--server", owned.url, "--token", "alice-token")
    assert table.returncode == 0, table.stderr
    header, *lines = table.stdout.splitlines()
    assert header.split() == ["SIZE", "STATE", "SHA256", "AGE", "NAME"]
    assert [line.split()[-1] for line in lines] == [u["relativePath"] for u in uploads]  # the same order
    assert all(u["sha256"][:12] in line for u, line in zip(uploads, lines, strict=True))

    limited = run_tuskit(tmp_path, "ls", "--server", owned.url, "--token", "alice-token", "--limit", "2", "--json")
    assert json.loads(limited.stdout)["uploads"] == uploads[:2]


def test_pages_are_followed_without_repeating_or_skipping_an_upload(owned: ServerProcess) -> None:
    paged = list(list_uploads(owned.url, "alice-token", page_size=2))  # three pages: 2, 2, 1
    whole = list(list_uploads(owned.url, "alice-token"))
    assert [u["id"] for u in paged] == [u["id"] for u in whole] and len(whole) == 5
    assert [u["id"] for u in list_uploads(owned.url, "alice-token", limit=3, page_size=2)] == [
        u["id"] for u in whole[:3]]


def test_a_refused_listing_is_an_error_with_the_servers_reason(tmp_path: Path, owned: ServerProcess) -> None:
    with pytest.raises(ListingError, match="401"):
        list(list_uploads(owned.url, "wrong-token"))
    result = run_tuskit(tmp_path, "ls", "--server", owned.url, "--token", "wrong-token")
    assert result.returncode == 1 and "tuskit ls: " in result.stderr and "401" in result.stderr


def test_the_table_keeps_names_whole_and_says_how_far_an_upload_got() -> None:
    now = 1_000_000.0
    items = [{"id": "1", "size": 2048, "offset": 512, "state": "uploading", "sha256": None,
              "filename": "movie.mkv", "relativePath": "films/2026/a rather long name of a movie.mkv",
              "created": now - 7200},
             {"id": "2", "size": 10, "offset": 10, "state": "processed", "sha256": "ab" * 32, "filename": "x.txt",
              "relativePath": None, "created": now - 30}]
    header, first, second = listing_lines(items, now)
    assert first.split(maxsplit=6) == ["2.0", "KiB", "uploading", "25%", NONE_MARK, "2h",
                                       "films/2026/a rather long name of a movie.mkv"]
    assert second.endswith("x.txt") and "abababababab " in second and " 30s " in second
    assert header.index("NAME") == first.index("films") == second.index("x.txt")  # columns line up

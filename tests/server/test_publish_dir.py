"""--publish-dir: verified uploads also appear as DIR/<owner>/<relativePath or filename>, hard-linked,
never over an existing file; unsafe names and unverified uploads never appear; a synced tree comes back."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from tus_calls import create, patch, upload

from support import TUS, ServerProcess, b64, create_upload, poll, run_sync

ALICE = {"Authorization": "Bearer alice-pub-3e9"}
BOB = {"Authorization": "Bearer bob-pub-81d"}


def published(path: Path) -> Path:
    return poll(lambda: path if path.is_file() else None, what=f"{path} to be published")


def logged(server: ServerProcess, text: str) -> str:
    return poll(lambda: next((line for line in server.output if text in line), None), what=f"log line {text!r}")


def stored(server: ServerProcess, url: str) -> Path:
    return server.data_dir / "uploads" / url.rsplit("/", 1)[1]


@pytest.mark.file_store  # links and inodes are the file store's; S3 exports are copies (the other tests)
def test_uploads_appear_under_their_owner_and_relative_path_as_hard_links(
        server_factory: Callable[..., ServerProcess], tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("alice-pub-3e9 alice\nbob-pub-81d bob\n")
    out = tmp_path / "published"
    server = server_factory("--tokens", str(tokens), "--publish-dir", str(out))

    report = upload(server.url, b"quarterly figures\n", ALICE, filename="report.txt",
                    relativePath="work/2024/report.txt")
    photo = upload(server.url, b"\xff\xd8 not much of a photo", BOB, filename="photo.jpg")
    mine = published(out / "alice" / "work" / "2024" / "report.txt")
    theirs = published(out / "bob" / "photo.jpg")
    assert mine.read_bytes() == b"quarterly figures\n" and theirs.read_bytes() == b"\xff\xd8 not much of a photo"
    assert mine.stat().st_ino == stored(server, report).stat().st_ino  # a link, not a copy
    assert stat.S_IMODE(mine.stat().st_mode) == 0o440  # writing into it cannot change the verified upload

    assert requests.delete(photo, headers={**TUS, **BOB}, timeout=10).status_code == 204
    assert not stored(server, photo).exists() and theirs.read_bytes() == b"\xff\xd8 not much of a photo"


def test_a_taken_name_gets_a_number_and_nothing_is_replaced(server_factory: Callable[..., ServerProcess],
                                                            tmp_path: Path) -> None:
    out = tmp_path / "published"
    (out / "anonymous").mkdir(parents=True)
    (out / "anonymous" / "notes.txt").write_text("the operator's own file\n")
    server = server_factory("--publish-dir", str(out))
    upload(server.url, b"first upload\n", filename="notes.txt")
    assert published(out / "anonymous" / "notes (1).txt").read_bytes() == b"first upload\n"
    upload(server.url, b"second upload\n", filename="notes.txt")
    assert published(out / "anonymous" / "notes (2).txt").read_bytes() == b"second upload\n"
    assert (out / "anonymous" / "notes.txt").read_text() == "the operator's own file\n"
    # a decomposed "é" (macOS) and a composed one are one name: the second gets a number
    upload(server.url, b"nfd", filename="cafe\u0301.txt")
    upload(server.url, b"nfc", filename="caf\u00e9.txt")
    published(out / "anonymous" / "caf\u00e9 (1).txt")
    assert sorted(p.name for p in out.glob("anonymous/caf*")) == ["caf\u00e9 (1).txt", "caf\u00e9.txt"]


def test_unsafe_names_and_unverified_uploads_are_not_published(server_factory: Callable[..., ServerProcess],
                                                               tmp_path: Path) -> None:
    out = tmp_path / "nested" / "published"
    server = server_factory("--publish-dir", str(out))
    escape = upload(server.url, b"trying to escape", filename="x.txt", relativePath="../../escaped.txt")
    assert escape.rsplit("/", 1)[1] in logged(server, "not published: unsafe name")
    upload(server.url, b"absolute", relativePath="/tmp/abs.txt")
    logged(server, "absolute path")
    assert requests.get(escape, timeout=10).content == b"trying to escape"  # still an upload, just not published

    failed = create_upload(server.url, 5, metadata=f"filename {b64('bad.txt')},sha256 {b64('0' * 64)}")
    assert patch(failed.headers["Location"], 0, b"hello").status_code == 460
    unfinished = create(server.url, 10, filename="half.txt").headers["Location"]
    assert patch(unfinished, 0, b"12345").status_code == 204
    upload(server.url, b"fine", filename="fine.txt")
    published(out / "anonymous" / "fine.txt")
    assert sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "nested").rglob("*") if p.is_file()) == [
        "nested/published/anonymous/fine.txt"]
    assert not list(tmp_path.rglob("escaped.txt"))


def test_a_concatenated_upload_is_published_once_and_its_partials_never(
        server_factory: Callable[..., ServerProcess], tmp_path: Path) -> None:
    out = tmp_path / "published"
    server = server_factory("--publish-dir", str(out))
    parts = []
    for piece in (b"one ", b"two"):
        url = requests.post(server.url, headers={**TUS, "Upload-Length": str(len(piece)), "Upload-Concat": "partial",
                                                 "Upload-Metadata": f"filename {b64('part.bin')}"},
                            timeout=10).headers["Location"]
        assert patch(url, 0, piece).status_code == 204
        parts.append(url)
    requests.post(server.url, headers={**TUS, "Upload-Concat": "final;" + " ".join(parts),
                                       "Upload-Metadata": f"filename {b64('whole.txt')}"}, timeout=10)
    assert published(out / "anonymous" / "whole.txt").read_bytes() == b"one two"
    assert [p.name for p in (out / "anonymous").iterdir()] == ["whole.txt"]


def test_a_synced_folder_comes_back_with_its_tree(server_factory: Callable[..., ServerProcess], tmp_path: Path) -> None:
    out = tmp_path / "published"
    server = server_factory("--publish-dir", str(out))
    root = tmp_path / "camera"
    files = {"DCIM/100/IMG_0001.JPG": os.urandom(300_000), "DCIM/100/IMG_0002.JPG": os.urandom(5000),
             "DCIM/101/clip.mov": os.urandom(1_200_000), "notes.txt": b"shot list\n"}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    result = run_sync(tmp_path, str(root), "--server", server.url, "--once", "--quiet", "0.2")
    assert result.returncode == 0, result.stdout + result.stderr
    for rel, data in files.items():
        assert hashlib.sha256(published(out / "anonymous" / rel).read_bytes()).digest() == \
            hashlib.sha256(data).digest()
    assert sorted(p.relative_to(out / "anonymous").as_posix() for p in out.rglob("*") if p.is_file()) == \
        sorted(files)


@pytest.mark.file_store
def test_across_file_systems_the_upload_is_copied(server_factory: Callable[..., ServerProcess], tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second file system (/dev/shm) to publish into")
    out = shm / f"tuskit-publish-{os.getpid()}-{tmp_path.name}"
    try:
        server = server_factory("--publish-dir", str(out))
        data = os.urandom(3 * 1024 * 1024 + 7)
        url = upload(server.url, data, filename="big.bin")
        copy = published(out / "anonymous" / "big.bin")
        assert copy.read_bytes() == data and copy.stat().st_ino != stored(server, url).stat().st_ino
        assert not [p for p in (out / "anonymous").iterdir() if p.name.endswith(".tuskit-tmp")]
    finally:
        for path in sorted(out.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        if out.exists():
            out.rmdir()

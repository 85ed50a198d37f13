"""The S3 store on its own terms: several hosts sharing nothing but Redis and the bucket, kill -9 mid-PATCH,
copy-concatenation, and nothing left behind in the bucket (the tus behaviour tests run on S3 as well)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests
from balancer import RoundRobin
from moto_server import CREDENTIALS, MotoServer
from storage import Storage
from tus_calls import poll, upload

from tuskit.server.stores.s3 import S3Location, S3Store
from tuskit.server.stores.tails import chain

from support import (
    OFFSET_TYPE,
    TUS,
    ServerProcess,
    b64,
    create_upload,
    patch_upload,
    raw_connect,
    request_head,
    stored_sha256,
)

MiB = 1024 * 1024
PART = 8 * MiB  # the servers' default --s3-part-size


@pytest.fixture
def s3(moto: MotoServer) -> Storage:
    return Storage("s3", moto, moto.new_bucket())


@pytest.fixture
def hosts(s3: Storage, redis_url: str, tmp_path: Path) -> Iterator[list[ServerProcess]]:
    """Two "hosts": own data dirs, one external Redis and one bucket prefix between them, nothing else."""
    prefix = s3.new_prefix()
    started = [s3.start(tmp_path / name, "--redis-url", redis_url, prefix=prefix) for name in ("a", "b")]
    yield started
    for server in started:
        server.stop()


def _on(server: ServerProcess, url: str) -> str:
    return server.url + url.rsplit("/", 1)[1]


def _declared(body: bytes) -> str:
    return f"sha256 {b64(hashlib.sha256(body).hexdigest())}"


def _offset(url: str) -> int:
    head = requests.head(url, headers=TUS, timeout=30)
    assert head.status_code == 200, head.text
    return int(head.headers["Upload-Offset"])


def test_kill_9_mid_patch_on_one_host_then_resume_on_the_other(
        hosts: list[ServerProcess], s3: Storage, redis_url: str, tmp_path: Path) -> None:
    a, b = hosts
    body = os.urandom(48 * MiB)
    url = create_upload(a.url, len(body), metadata=_declared(body)).headers["Location"]
    upload_id = url.rsplit("/", 1)[1]
    state = redis.Redis.from_url(redis_url)
    sock = raw_connect(_on(b, url))
    try:
        sock.sendall(request_head("PATCH", _on(b, url), {**TUS, "Upload-Offset": "0", "Content-Type": OFFSET_TYPE,
                                                         "Content-Length": str(len(body))}) + body[:40 * MiB])
        # the offset advances as parts land, not only when the body ends
        poll(lambda: int(state.hget(f"tuskit:upload:{upload_id}", "offset") or 0) >= 2 * PART, timeout=60,
             what="two parts recorded")
        b.kill()
    finally:
        sock.close()
        state.close()

    # on A, which never saw a byte of that body, once the dead writer's lease ran out (a client retries 423)
    head = poll(lambda: (r := requests.head(url, headers=TUS, timeout=30)).status_code == 200 and r, timeout=30,
                what="the dead writer's lease to expire")
    offset = int(head.headers["Upload-Offset"])
    assert 2 * PART <= offset <= 40 * MiB and offset % PART == 0
    done = patch_upload(url, offset, body[offset:])
    assert done.status_code == 204, done.text  # the whole-file SHA-256 verified on A
    restarted_b = s3.start(b.data_dir, "--redis-url", redis_url, prefix=s3.prefix_of(a))
    try:
        assert stored_sha256(_on(restarted_b, url)) == hashlib.sha256(body).hexdigest()
    finally:
        restarted_b.stop()
    # the tails and the UploadId went with completion; the object and its post-processing report stay
    assert s3.keys(a) == {f"{s3.prefix_of(a)}/{upload_id}", f"{s3.prefix_of(a)}/{upload_id}.derived/report.json"}


def test_small_patches_hopping_between_hosts_cross_part_boundaries(hosts: list[ServerProcess], s3: Storage) -> None:
    """The bytes that do not fill a part yet live in the bucket, where the other host continues from them."""
    body = os.urandom(PART + 3 * MiB + 12345)
    url = create_upload(hosts[0].url, len(body), metadata=_declared(body)).headers["Location"]
    offset, turn = 0, 0
    # 20 small bodies: each host reads the other's segments back, and a long chain is stored again as one
    for size in [64 * 1024] * 20 + [3 * MiB, 64 * 1024, 6 * MiB, 64 * 1024]:
        response = patch_upload(_on(hosts[turn % 2], url), offset, body[offset:offset + size])
        assert response.status_code == 204, response.text
        offset += size
        assert response.headers["Upload-Offset"] == str(offset)  # recorded only once durable in the bucket
        turn += 1
    done = patch_upload(_on(hosts[turn % 2], url), offset, body[offset:])
    assert done.status_code == 204 and done.headers["Upload-Offset"] == str(len(body))
    assert stored_sha256(_on(hosts[(turn + 1) % 2], url)) == hashlib.sha256(body).hexdigest()
    ranged = requests.get(url, headers={"Range": f"bytes={PART - 10}-{PART + 9}"}, timeout=30)
    assert ranged.status_code == 206 and ranged.content == body[PART - 10:PART + 10]


def test_tus_js_client_parallel_uploads_spread_over_both_hosts(
        hosts: list[ServerProcess], tmp_path: Path, node_packages: None) -> None:
    from interop.node_runner import run_script

    path = tmp_path / "source.bin"
    path.write_bytes(os.urandom(24 * MiB + 5))  # four partials of 6 MiB: merged by UploadPartCopy
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with RoundRobin(*(h.url for h in hosts)) as balancer:
        answer = run_script("tus_node.mjs", {"endpoint": balancer.endpoint(), "scenario": "parallel",
                                             "path": str(path), "name": path.name, "metadata": {"sha256": digest}})
        assert set(balancer.picked) == {0, 1}
        assert stored_sha256(answer["url"]) == digest
    for host in hosts:
        assert stored_sha256(_on(host, answer["url"])) == digest


def test_small_partials_are_merged_by_streaming(hosts: list[ServerProcess]) -> None:
    pieces = [os.urandom(n) for n in (100, 6 * MiB, 7)]
    urls = []
    for i, piece in enumerate(pieces):
        created = requests.post(hosts[i % 2].url, headers={**TUS, "Upload-Length": str(len(piece)),
                                                           "Upload-Concat": "partial"}, timeout=30)
        assert patch_upload(created.headers["Location"], 0, piece).status_code == 204
        urls.append(created.headers["Location"])
    whole = b"".join(pieces)
    final = requests.post(hosts[1].url, headers={**TUS, "Upload-Concat": "final;" + " ".join(urls),
                                                 "Upload-Metadata": _declared(whole)}, timeout=60)
    assert final.status_code == 201
    assert stored_sha256(final.headers["Location"]) == hashlib.sha256(whole).hexdigest()


def test_termination_leaves_nothing_in_the_bucket(hosts: list[ServerProcess], s3: Storage) -> None:
    a, b = hosts
    body = os.urandom(PART + 100)
    url = create_upload(a.url, 2 * PART).headers["Location"]
    assert patch_upload(url, 0, body).status_code == 204  # a landed part, an unfilled tail
    assert s3.holds(a, url.rsplit("/", 1)[1])
    assert requests.delete(_on(b, url), headers=TUS, timeout=30).status_code == 204
    assert s3.keys(a) == set()


def test_sweeper_aborts_multipart_uploads_nobody_recorded(s3: Storage, tmp_path: Path) -> None:
    """Left behind by a process that died while deleting an upload, or by a failover that lost its record."""
    prefix = s3.new_prefix()
    key = f"{prefix}/{'ab' * 16}"
    s3.client().create_multipart_upload(Bucket=s3.bucket, Key=key)
    server = s3.start(tmp_path / "sweep", "--expire-after", "1s", "--sweep-interval", "0.2s", prefix=prefix)
    try:
        live = create_upload(server.url, 10).headers["Location"]  # recorded: expiry deletes it, not this
        poll(lambda: not s3.keys(server), timeout=30, what="bucket emptied")
        assert requests.head(live, headers=TUS, timeout=10).status_code == 410
    finally:
        server.stop()


def test_a_tail_is_read_along_its_chain_of_segments() -> None:
    # {start: size}: the segment at 50 and the one at 300 were left by crashes past the recorded offset
    segments = {0: 100, 50: 10, 100: 200, 300: 5}
    assert chain(segments, 250) == [(0, 100), (100, 150)]
    assert chain(segments, 305) == [(0, 100), (100, 200), (300, 5)]
    assert chain(segments, 306) is None  # a recorded offset the stored bytes do not reach: a failure, not zeros
    assert chain({0: 400, 100: 200}, 350) == [(0, 350)]  # the whole tail stored again jumps over the rest


@pytest.mark.parametrize("boundary", [6 * MiB + 100, 100])  # a first segment that is a part and more, or tiny
def test_segments_are_multipart_uploads_of_their_own_and_publish_as_one_blob(
        s3: Storage, boundary: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A session that may have a live predecessor writes its own segment: the predecessor's late parts land
    in the first segment's multipart upload past its recorded end, where publishing never looks."""
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    store = S3Store(S3Location(s3.bucket, s3.new_prefix(), s3.endpoint, "us-east-1"), 5 * MiB)
    body = os.urandom(14 * MiB + 7)
    upload_id = "cd" * 16
    store.create(upload_id, len(body))
    first = store.writer(upload_id, 0)
    first.write(body[:boundary])
    assert first.sync() == boundary
    first.close()
    second = store.writer(upload_id, boundary, "token2", boundary)
    stale = store.writer(upload_id, boundary)  # the first segment's writer, paused past its lease, goes on
    stale.write(b"x" * (6 * MiB))
    stale.sync()
    stale.close()
    for block in range(boundary, len(body), MiB):
        second.write(body[block:block + MiB])
    assert second.sync() == len(body)
    second.close()
    store.finalize(upload_id, len(body), (("", 0), ("token2", boundary)), in_place=False)
    store.finalize(upload_id, len(body), (("", 0), ("token2", boundary)), in_place=False)  # done again: no change
    assert b"".join(store.read(upload_id, 0, len(body))) == body
    prefix = store.location.prefix
    assert {o["Key"] for o in s3.client().list_objects_v2(Bucket=s3.bucket, Prefix=prefix)["Contents"]} == {
        prefix + upload_id}
    assert not s3.client().list_multipart_uploads(Bucket=s3.bucket, Prefix=prefix).get("Uploads")


def test_parts_grow_when_an_upload_would_need_more_than_10000(s3: Storage) -> None:
    store = S3Store(S3Location(s3.bucket, "", s3.endpoint, "us-east-1"), PART)
    assert store.part_size_for(None) == store.part_size_for(10_000 * PART) == PART
    assert store.part_size_for(10_000 * PART + 1) == PART + MiB  # whole MiB, at least length / 10,000
    assert store.part_size_for(5 * 1024**4) == 525 * MiB  # S3's largest object still fits


def test_a_bucket_the_server_cannot_write_stops_it_with_one_line(moto: MotoServer, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tuskit", "server", "--port", "0", "--data-dir", str(tmp_path),
         "--storage", "s3://no-such-bucket/uploads", "--s3-endpoint", moto.endpoint],
        env={**os.environ, **CREDENTIALS}, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "listening" not in done.stdout
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("tuskit server: cannot write to s3://no-such-bucket/uploads/") and "NoSuchBucket" in last


def test_downloads_can_redirect_to_a_presigned_url(s3: Storage, tmp_path: Path) -> None:
    """--s3-presign-downloads: GET answers 302 to the bucket, which serves the bytes, ranges and the name the
    server would have given; without the flag the server streams them itself."""
    body = os.urandom(3 * MiB)
    server = s3.start(tmp_path / "presign", "--s3-presign-downloads", "10m")
    try:
        url = upload(server.url, body, filename="report 2026.pdf")
        moved = requests.get(url, allow_redirects=False, timeout=30)
        assert moved.status_code == 302 and moved.headers["Cache-Control"] == "no-store"
        assert moved.headers["Location"].startswith(s3.endpoint + "/") and "Expires=" in moved.headers["Location"]
        whole = requests.get(url, timeout=30)
        assert whole.status_code == 200 and whole.content == body
        assert whole.headers["Content-Disposition"] == "attachment; filename*=UTF-8''report%202026.pdf"
        part = requests.get(url, headers={"Range": "bytes=1000-1999"}, timeout=30)
        assert part.status_code == 206 and part.content == body[1000:2000]
    finally:
        server.stop()
    streamed = s3.start(tmp_path / "presign", prefix=s3.prefix_of(server))
    try:
        direct = requests.get(url.replace(server.url, streamed.url), allow_redirects=False, timeout=30)
        assert direct.status_code == 200 and direct.content == body
    finally:
        streamed.stop()


def test_presigned_downloads_need_an_s3_store(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "tuskit", "server", "--port", "0", "--data-dir", str(tmp_path),
                           "--s3-presign-downloads", "10m"], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1].endswith("--s3-presign-downloads needs --storage s3://...: files "
                                                         "have no URL of their own")

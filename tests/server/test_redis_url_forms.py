"""--redis-url forms beyond redis://: TLS (rediss://) and Sentinel URLs (the failover itself is in
tests/faults/test_redis_failover.py).

The redis-server the tests have is built without TLS, so TLS is terminated by a small proxy in front of it
with a certificate made for the test: the server must verify it against the CA the URL names.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import ipaddress
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from loop_thread import LoopServer, pipe

from tuskit.server.redis.connect import sentinel_for
from tuskit.server.redis.embedded import EmbeddedRedis

from support import TUS, b64, create_upload, patch_upload, start_server, stored_sha256


def _certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class TLSFront(LoopServer):
    """TLS on a loopback port, forwarded in clear to a redis unix socket; counts accepted connections."""

    def __init__(self, upstream: str, cert: Path, key: Path) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        super().__init__(context)
        self.upstream = upstream
        self.handshakes = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.handshakes += 1
        up_reader, up_writer = await asyncio.open_unix_connection(self.upstream)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@pytest.fixture
def tls_redis(redis_server: EmbeddedRedis, redis_url: str, tmp_path: Path) -> Iterator[tuple[TLSFront, Path]]:
    cert, key = _certificate(tmp_path)
    with TLSFront(redis_server.socket_path, cert, key) as front:
        yield front, cert


def test_rediss_url_talks_tls_and_verifies_the_certificate(tls_redis: tuple[TLSFront, Path], tmp_path: Path) -> None:
    front, ca = tls_redis
    server = start_server(tmp_path / "tls", "--redis-url", f"rediss://127.0.0.1:{front.port}/0?ssl_ca_certs={ca}")
    try:
        body = os.urandom(3 * 1024 * 1024)
        digest = hashlib.sha256(body).hexdigest()
        url = create_upload(server.url, len(body), metadata=f"sha256 {b64(digest)}").headers["Location"]
        assert patch_upload(url, 0, body).status_code == 204
        assert stored_sha256(url) == digest
        assert requests.head(url, headers=TUS, timeout=10).headers["Upload-Offset"] == str(len(body))
        assert front.handshakes > 0
    finally:
        server.stop()


def test_rediss_url_refuses_a_certificate_it_cannot_verify(tls_redis: tuple[TLSFront, Path], tmp_path: Path) -> None:
    front, _ = tls_redis
    done = subprocess.run([sys.executable, "-m", "tuskit", "server", "--port", "0", "--data-dir", str(tmp_path),
                           "--redis-url", f"rediss://127.0.0.1:{front.port}/0"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "listening" not in done.stdout
    assert done.stderr.strip().splitlines()[-1].startswith("tuskit server: cannot reach redis at rediss:")
    assert "CERTIFICATE_VERIFY_FAILED" in done.stderr


def test_sentinel_url_names_sentinels_service_db_and_credentials() -> None:
    sentinel, service = sentinel_for("rediss+sentinel://app:s%40cret@10.0.0.1:26379,[::1]:26380/uploads/2", {})
    assert service == "uploads"
    assert [(c.connection_pool.connection_kwargs["host"], c.connection_pool.connection_kwargs["port"])
            for c in sentinel.sentinels] == [("10.0.0.1", 26379), ("::1", 26380)]
    assert sentinel.connection_kwargs["db"] == 2 and sentinel.connection_kwargs["password"] == "s@cret"
    assert sentinel.connection_kwargs["username"] == "app" and sentinel.connection_kwargs["ssl"] is True
    for bad in ("redis+sentinel://host:26379", "redis+sentinel://host/svc", "redis+sentinel://h:1/svc/0/x"):
        with pytest.raises(ValueError):
            sentinel_for(bad, {})

"""Signed download links (`tuskit sign ID --expires 1h`): the URL downloads one upload without a token
until it expires; a tampered or expired link is 403, and a link grants nothing but that download."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from tus_calls import upload

from support import TUS, ServerProcess, start_server

TOKEN = {"Authorization": "Bearer carol-3c1f"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("signing")
    (data / "tokens").write_text("carol-3c1f carol\n")
    srv = start_server(data / "server", "--tokens", str(data / "tokens"))
    yield srv
    srv.stop()


def sign(server: ServerProcess, upload_id: str, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "tuskit", "sign", upload_id, "--url", server.url,
                          "--data-dir", str(server.data_dir), *args],
                         capture_output=True, text=True, check=True, timeout=60)
    return out.stdout.strip()


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | changes
    return parts._replace(query=urlencode(query)).geturl()


def test_signed_link_downloads_without_a_token(server: ServerProcess) -> None:
    url = upload(server.url, b"shared with a friend", TOKEN, filename="note.txt")
    assert requests.get(url, timeout=10).status_code == 401
    link = sign(server, url[-32:], "--expires", "1h")
    assert link.startswith(url + "?")
    response = requests.get(link, timeout=10)
    assert response.status_code == 200 and response.content == b"shared with a friend"
    ranged = requests.get(link, headers={"Range": "bytes=0-5"}, timeout=10)
    assert ranged.status_code == 206 and ranged.content == b"shared"


def test_tampered_or_expired_links_are_403(server: ServerProcess) -> None:
    url = upload(server.url, b"private", TOKEN)
    other = upload(server.url, b"other private", TOKEN)
    link = sign(server, url[-32:])
    signature = parse_qs(urlsplit(link).query)["signature"][0]
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    later = str(int(parse_qs(urlsplit(link).query)["expires"][0]) + 3600)
    for bad in (
        with_query(link, signature=flipped),
        with_query(link, expires=later),  # extending the expiry breaks the signature
        with_query(link, signature="not hex at all é"),
        with_query(link.replace(url[-32:], other[-32:])),  # another upload, same signature
        sign(server, url[-32:], "--expires", "0"),  # already expired
    ):
        response = requests.get(bad, timeout=10)
        assert response.status_code == 403, bad
        assert response.text.strip() in ("invalid download signature", "download link expired")


def test_a_link_grants_only_the_download(server: ServerProcess) -> None:
    url = upload(server.url, b"read only", TOKEN)
    query = urlsplit(sign(server, url[-32:])).query
    assert requests.delete(f"{url}?{query}", headers=TUS, timeout=10).status_code == 401
    assert requests.head(f"{url}?{query}", headers=TUS, timeout=10).status_code == 401
    assert requests.get(f"{url}/info?{query}", timeout=10).status_code == 200  # reading about it is reading it
    assert requests.get(f"{url}/thumbnail?size=256&{query}", timeout=10).status_code == 404  # text: no thumbnail


def test_sign_refuses_without_the_servers_secret(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "tuskit", "sign", "a" * 32, "--data-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "no signing secret" in out.stderr


def test_explicit_signing_secret_is_shared_by_server_and_sign(server_factory: Callable[..., ServerProcess]) -> None:
    srv = server_factory("--signing-secret", "s3cret-for-links")
    url = upload(srv.url, b"signed with a given secret")
    out = subprocess.run([sys.executable, "-m", "tuskit", "sign", url[-32:], "--url", srv.url,
                          "--signing-secret", "s3cret-for-links"], capture_output=True, text=True, timeout=60)
    assert requests.get(out.stdout.strip(), timeout=10).content == b"signed with a given secret"
    assert requests.get(with_query(out.stdout.strip(), signature="0" * 64), timeout=10).status_code == 403


def test_owner_gets_a_link_from_the_server_and_a_link_cannot_mint_links(server: ServerProcess) -> None:
    url = upload(server.url, b"shared from the app", TOKEN)
    assert requests.get(url + "/link", timeout=10).status_code == 401
    answer = requests.get(url + "/link", params={"expires": "10m"}, headers=TOKEN, timeout=10).json()
    assert answer["url"].startswith(url + "?") and answer["expires"] > 0
    assert requests.get(answer["url"], timeout=10).content == b"shared from the app"
    query = urlsplit(answer["url"]).query
    assert requests.get(f"{url}/link?{query}", timeout=10).status_code == 401  # no token from a link
    for bad in ("0s", "31d", "soon"):
        assert requests.get(url + "/link", params={"expires": bad}, headers=TOKEN, timeout=10).status_code == 400

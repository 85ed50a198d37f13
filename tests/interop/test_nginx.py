"""Debian's nginx in front of `tuskit server --behind-proxy`, with the proxy snippet of docs/deploy.md copied
verbatim: tus-js-client and `tuskit sync` upload through it, the URLs handed out point at nginx, the bytes
arrive intact, request bodies stream (nginx writes no temporary file), events stream unbuffered, and
forwarding headers a client makes up never reach tuskit."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from interop.node_runner import run_script

from support import TUS, ServerProcess, free_port, poll, run_sync, start_server, stored_sha256

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
DEPLOY = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"
SNIPPET = "# /etc/nginx/snippets/tuskit-proxy.conf"
TOKEN = "nginx-token-1f7a"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt-get install -y nginx; "
                                "the CI script .ci/run does it)")


def documented_snippet() -> str:
    """The proxy snippet exactly as docs/deploy.md shows it."""
    blocks = re.findall(r"```nginx\n(.*?)```", DEPLOY.read_text(), re.S)
    return next(block for block in blocks if block.startswith(SNIPPET))


@dataclass
class Proxy:
    origin: str
    upstream: ServerProcess
    prefix: Path

    @property
    def url(self) -> str:
        return self.origin + "/files/"


def _nginx_conf(prefix: Path, port: int, upstream_port: int) -> str:
    temp = "\n".join(f"  {kind}_temp_path {prefix / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi",
                                                                          "scgi"))
    return f"""daemon off;
master_process off;
worker_processes 1;
pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} warn;
events {{ worker_connections 256; }}
http {{
  access_log {prefix / "access.log"};
{temp}
  upstream tuskit {{ server 127.0.0.1:{upstream_port}; keepalive 8; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{ include {prefix / "tuskit-proxy.conf"}; }}
  }}
}}
"""


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    assert NGINX is not None
    data = tmp_path_factory.mktemp("behind-nginx")
    tokens = data / "tokens.txt"
    tokens.write_text(f"{TOKEN} nginx-user\n")
    upstream = start_server(data / "server", "--behind-proxy", "--tokens", str(tokens))
    prefix = data / "nginx"
    prefix.mkdir()
    (prefix / "tuskit-proxy.conf").write_text(documented_snippet())
    port = free_port()
    (prefix / "nginx.conf").write_text(_nginx_conf(prefix, port, int(upstream.origin.rsplit(":", 1)[1])))
    log = prefix / "error.log"
    nginx = subprocess.Popen([NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", str(log)])
    origin = f"http://127.0.0.1:{port}"
    try:
        poll(lambda: nginx.poll() is not None or _answers(origin), what="nginx to answer")
        if nginx.poll() is not None:
            pytest.fail(f"nginx exited: {log.read_text()}")
        yield Proxy(origin, upstream, prefix)
    finally:
        nginx.terminate()
        nginx.wait(10)
        upstream.stop()


def _answers(origin: str) -> bool:
    try:
        return requests.get(origin + "/healthz", timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def _buffered(proxy: Proxy) -> list[str]:
    """nginx's warnings that it spooled a request body to a temporary file (its default, which we turn off)."""
    return [line for line in (proxy.prefix / "error.log").read_text().splitlines() if "temporary file" in line]


@pytest.mark.usefixtures("node_packages")
@pytest.mark.parametrize(("size", "chunk"), [(12 * 1024 * 1024 + 5, None), (2_000_000, 300_000)],
                         ids=["one-patch", "chunked"])
def test_tus_js_client_uploads_through_nginx(proxy: Proxy, tmp_path: Path, size: int, chunk: int | None) -> None:
    source = tmp_path / "through-nginx.bin"
    source.write_bytes(os.urandom(size))
    answer = run_script("tus_node.mjs", {"endpoint": proxy.url, "scenario": "buffer", "path": str(source),
                                         "name": source.name, "headers": AUTH,
                                         **({"chunkSize": chunk} if chunk else {})})
    assert answer["url"].startswith(proxy.url)  # the URL clients resume at is nginx's, not tuskit's
    assert stored_sha256(answer["url"], AUTH) == hashlib.sha256(source.read_bytes()).hexdigest()
    assert _buffered(proxy) == []  # streamed: nginx never spooled a body to disk


def test_tuskit_sync_uploads_a_folder_through_nginx(proxy: Proxy, tmp_path: Path) -> None:
    root = tmp_path / "outbox"
    files = {"a.txt": b"alpha\n", "deep/b.bin": os.urandom(3 * 1024 * 1024), "deep/er/c.bin": os.urandom(70_000)}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    result = run_sync(tmp_path, str(root), "--server", proxy.url, "--token", TOKEN, "--once", "--quiet", "0.2")
    assert result.returncode == 0, result.stdout + result.stderr

    listed = requests.get(proxy.origin + "/uploads", headers=AUTH, timeout=10).json()["uploads"]
    by_path = {item["relativePath"]: item for item in listed}
    for rel, data in files.items():
        item = by_path[rel]
        assert item["url"].startswith(proxy.url) and item["state"] in ("processing", "processed")
        assert item["sha256"] == hashlib.sha256(data).hexdigest()
        assert stored_sha256(item["url"], AUTH) == item["sha256"]


def test_forwarding_headers_a_client_makes_up_do_not_reach_tuskit(proxy: Proxy) -> None:
    spoofed = {"Forwarded": "host=evil.example;proto=https", "X-Forwarded-Host": "evil.example",
               "X-Scheme": "https", "X-Forwarded-Proto": "https", "X-Real-IP": "203.0.113.9"}
    created = requests.post(proxy.url, headers={**TUS, **AUTH, **spoofed, "Upload-Length": "3"}, timeout=10)
    assert created.status_code == 201 and created.headers["Location"].startswith(proxy.url)
    marker = created.headers["X-Request-ID"]
    line = poll(lambda: next((x for x in proxy.upstream.output if marker in x), None), what="the request's log line")
    assert "203.0.113.9" not in line and " 127.0.0.1 POST /files/ 201 " in line  # the address nginx saw


def test_events_stream_through_nginx(proxy: Proxy) -> None:
    with requests.get(proxy.origin + "/events", params={"access_token": TOKEN}, stream=True, timeout=10) as events:
        assert events.status_code == 200 and events.headers["Content-Type"].startswith("text/event-stream")
        assert next(events.iter_lines(decode_unicode=True)) == ": connected"  # not held back in a buffer


def test_the_documented_unit_is_valid_and_starts_the_documented_config(tmp_path: Path) -> None:
    unit = re.search(r"```ini\n(.*?)```", DEPLOY.read_text(), re.S)
    assert unit is not None
    exec_start = next(line for line in unit.group(1).splitlines() if line.startswith("ExecStart="))
    assert exec_start.split()[1:] == ["server", "--config", "/etc/tuskit/server.toml"]
    assert "docs/server.toml /etc/tuskit/server.toml" in DEPLOY.read_text()  # that example is tested elsewhere
    analyze = shutil.which("systemd-analyze")
    beside = Path(sys.executable).with_name("tuskit")  # the test's own virtualenv, activated or not
    tuskit = str(beside) if beside.exists() else shutil.which("tuskit")
    if analyze is None or tuskit is None:
        pytest.skip("systemd-analyze (or an installed tuskit) is missing: the unit's keys are not checked")
    path = tmp_path / "tuskit.service"  # the unit as documented, started with this machine's tuskit
    path.write_text(unit.group(1).replace("/opt/tuskit/bin/tuskit", tuskit))
    verified = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True, timeout=60)
    assert (verified.returncode, verified.stderr) == (0, ""), verified.stderr  # unknown keys are only warned about

"""A real S3 API server for the tests: moto's server mode in a child process on a free loopback port.

moto enforces S3's multipart rules (EntityTooSmall for a part under 5 MiB but the last), so the S3 store
meets them here as it would on S3. A child process, not a thread of the test process: the tests' clients
and the S3 server then do not share one GIL, and a test that kills servers never touches it.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from dataclasses import dataclass

import boto3

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}

_SERVE = """
import logging, sys
from moto.server import ThreadedMotoServer
logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
server = ThreadedMotoServer("127.0.0.1", 0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()  # until the test process closes our stdin (or dies)
"""


@dataclass
class MotoServer:
    proc: subprocess.Popen[str]
    endpoint: str

    def client(self) -> object:
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def new_bucket(self) -> str:
        name = f"tuskit-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)  # type: ignore[attr-defined]
        return name

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_moto() -> MotoServer:
    proc = subprocess.Popen([sys.executable, "-c", _SERVE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    port = proc.stdout.readline().strip()
    if not port:
        proc.kill()
        raise RuntimeError("moto server did not start")
    return MotoServer(proc, f"http://127.0.0.1:{port}")

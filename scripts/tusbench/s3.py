"""An S3 API server for the `tuskit s3` column: moto's server mode as a child process on a free port.

moto keeps objects in memory and copies the whole object on CompleteMultipartUpload, so it is far slower
than S3 itself: the column shows what the S3 store costs tuskit (parts, tails, the multipart protocol)
against the file store on the same machine, not what S3 would deliver.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

import boto3

BUCKET = "tuskit-bench"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass
class S3Server:
    process: subprocess.Popen[bytes]
    endpoint: str

    def tuskit_args(self) -> tuple[str, ...]:
        return ("--storage", f"s3://{BUCKET}", "--s3-endpoint", self.endpoint)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start() -> S3Server:
    """moto on a free loopback port with the bench's bucket; its credentials go into this process's
    environment, which the tuskit servers inherit."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    os.environ.update(CREDENTIALS)
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("moto's S3 server did not start") from None
            time.sleep(0.1)
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
    return S3Server(process, endpoint)

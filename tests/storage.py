"""The two blob stores the server tests run against: the data dir's files and an S3 bucket on moto.

`Storage.start` starts a `tuskit server` on one of them; `Storage.keys` tells what that server's store
holds, so a test can assert "nothing is left behind" the same way on both.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moto_server import CREDENTIALS, MotoServer

from tuskit.server.stores.tails import piece_key

from support import ServerProcess, start_server


@dataclass
class Storage:
    kind: str  # "file" or "s3"
    moto: MotoServer | None = None
    bucket: str = ""
    _prefixes: dict[str, str] = field(default_factory=dict)  # server URL -> its key prefix

    def flags(self, prefix: str | None = None) -> list[str]:
        """Server flags for this store; S3: a fresh prefix in the bucket unless one is given (servers that
        share uploads share it)."""
        if self.moto is None:
            return []
        return ["--storage", f"s3://{self.bucket}/{prefix or self.new_prefix()}", "--s3-endpoint", self.moto.endpoint]

    @staticmethod
    def new_prefix() -> str:
        return uuid.uuid4().hex[:12]

    @property
    def env(self) -> dict[str, str]:
        return dict(CREDENTIALS) if self.moto is not None else {}

    def start(self, data_dir: Path, *args: str, prefix: str | None = None,
              env: dict[str, str] | None = None) -> ServerProcess:
        prefix = prefix or self.new_prefix()
        server = start_server(data_dir, *self.flags(prefix), *args, env={**self.env, **(env or {})})
        self._prefixes[server.url] = prefix
        return server

    def prefix_of(self, server: ServerProcess) -> str:
        return self._prefixes[server.url]

    @property
    def endpoint(self) -> str:
        assert self.moto is not None
        return self.moto.endpoint

    def client(self) -> Any:
        assert self.moto is not None
        return self.moto.client()

    def keys(self, server: ServerProcess) -> set[str]:
        """Everything the server's store holds: files, or objects and unfinished multipart uploads."""
        if self.moto is None:
            return {str(p.relative_to(server.data_dir)) for d in ("uploads", "derived")
                    for p in (server.data_dir / d).rglob("*")}
        prefix = self.prefix_of(server) + "/"
        s3 = self.client()
        objects = s3.list_objects_v2(Bucket=self.bucket, Prefix=prefix).get("Contents", [])
        uploads = s3.list_multipart_uploads(Bucket=self.bucket, Prefix=prefix).get("Uploads", [])
        return {o["Key"] for o in objects} | {"multipart:" + u["Key"] for u in uploads}

    def leave_bytes(self, server: ServerProcess, upload_id: str, body: bytes) -> None:
        """Store `body` as an unfinished upload's bytes, as a process that died after writing them left them
        (S3: as the tail of part 1, so `body` must be smaller than a part)."""
        if self.moto is None:
            (server.data_dir / "uploads" / upload_id).write_bytes(body)
        else:
            key = piece_key(f"{self.prefix_of(server)}/{upload_id}", 1, 0)
            self.client().put_object(Bucket=self.bucket, Key=key, Body=body)

    def added(self, server: ServerProcess, before: set[str]) -> set[str]:
        """What the store holds now and did not in `before`, bar post-processing reports of earlier uploads
        (a shared server's background work goes on meanwhile)."""
        new = self.keys(server) - before
        return {key for key in new if ".derived/" not in key and not key.startswith("derived/")}

    def holds(self, server: ServerProcess, upload_id: str) -> bool:
        return any(upload_id in key for key in self.keys(server))

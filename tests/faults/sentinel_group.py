"""A Redis master, one replica and three Sentinels on loopback ports: the binary tuskit embeds, as the
high-availability set-up --redis-url redis+sentinel:// is for. Replication is asynchronous, as usual."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import redis

from tuskit.server.redis.embedded import redis_server_binary

from support import free_port, poll

SERVICE = "tuskit"


class SentinelGroup:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.ports = {"master": free_port(), "replica": free_port()}
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        return "redis+sentinel://" + ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports) + f"/{SERVICE}"

    def _run(self, name: str, *args: str) -> None:
        home = self.dir / name
        home.mkdir(parents=True, exist_ok=True)
        self.procs[name] = subprocess.Popen([redis_server_binary(), *args], cwd=home, stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL)

    def start(self) -> None:
        base = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self._run("master", "--port", str(self.ports["master"]), *base)
        self._run("replica", "--port", str(self.ports["replica"]), *base,
                  "--replicaof", "127.0.0.1", str(self.ports["master"]))
        # Sentinels learn of replicas from the master's INFO, read at once and then every 10 s: start them
        # once the replica is in, so they know it from their first look
        poll(self._replica_synced, timeout=30, what="the replica in sync")
        for i, port in enumerate(self.sentinel_ports):
            conf = self.dir / f"sentinel{i}.conf"  # Sentinels rewrite their config: each its own file
            conf.parent.mkdir(parents=True, exist_ok=True)
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.ports['master']} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                f"sentinel failover-timeout {SERVICE} 10000\n")
            self._run(f"sentinel{i}", str(conf), "--sentinel")
        poll(self._ready, timeout=30, what="the replica known to every Sentinel")

    def _replica_synced(self) -> bool:
        try:
            replica = redis.Redis(port=self.ports["replica"], socket_timeout=1)
            synced = replica.info("replication").get("master_link_status") == "up"
            replica.close()
            return bool(synced)
        except redis.RedisError:
            return False

    def _ready(self) -> bool:
        try:
            return all(self._sentinel(p).sentinel_slaves(SERVICE) for p in self.sentinel_ports)
        except redis.RedisError:
            return False

    @staticmethod
    def _sentinel(port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=1)

    def master_port(self) -> int:
        _host, port = self._sentinel(self.sentinel_ports[0]).sentinel_get_master_addr_by_name(SERVICE)
        return int(port)

    def master(self) -> redis.Redis:
        return redis.Redis(port=self.master_port(), socket_timeout=2)

    def kill_master(self) -> None:
        """kill -9 of the master: whatever it had not yet sent to its replica is lost."""
        os.kill(self.procs["master"].pid, signal.SIGKILL)
        self.procs["master"].wait()

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 15
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

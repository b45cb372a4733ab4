"""Start and stop a throwaway ``redis-server`` on a free 127.0.0.1 port (tests and benchmarks).

The server keeps nothing on disk (no RDB snapshots, no AOF) and dies with the context manager.
``redis-server`` comes from the OS (``apt-get install redis-server``); ``.ci/run`` installs it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator


class RedisServerUnavailable(RuntimeError):
    """No redis-server binary on PATH."""


@dataclass
class RedisServer:
    host: str
    port: int
    process: subprocess.Popen

    @property
    def connection_string(self) -> str:
        """Feast's RedisOnlineStoreConfig.connection_string format (``host:port[,param=value...]``)."""
        return f"{self.host}:{self.port}"

    def client(self):
        import redis

        return redis.Redis(host=self.host, port=self.port)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def redis_server_binary() -> str | None:
    return shutil.which("redis-server")


def start_redis_server(host: str = "127.0.0.1", port: int | None = None,
                       timeout: float = 15.0) -> RedisServer:
    binary = redis_server_binary()
    if binary is None:
        raise RedisServerUnavailable("redis-server not found on PATH (apt-get install redis-server)")
    workdir = Path(tempfile.mkdtemp(prefix="imagerank-redis-"))
    for attempt in range(3):
        chosen = port or free_port(host)
        proc = subprocess.Popen(
            [binary, "--bind", host, "--port", str(chosen), "--save", "", "--appendonly", "no",
             "--dir", str(workdir), "--protected-mode", "yes", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break  # exited: port taken between free_port and bind, retry
            try:
                with socket.create_connection((host, chosen), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return RedisServer(host, chosen, proc)
            except OSError:
                time.sleep(0.05)
        err = b""
        if proc.poll() is None:
            proc.kill()
        try:
            _, err = proc.communicate(timeout=5)
        except Exception:  # noqa: BLE001
            pass
        if port is not None:
            break
    raise RuntimeError(f"redis-server did not start on {host}: {err.decode(errors='replace')[-500:]}")


@contextmanager
def redis_server(host: str = "127.0.0.1", port: int | None = None) -> Iterator[RedisServer]:
    """Run a redis-server for the duration of the block."""
    server = start_redis_server(host, port)
    try:
        yield server
    finally:
        server.stop()

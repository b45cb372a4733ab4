"""Start and stop a throwaway PostgreSQL server on a free 127.0.0.1 port (tests and benchmarks).

Debian's ``postgresql`` package (``/usr/lib/postgresql/<version>/bin``; ``make system-deps`` installs it) is
initialised into a temporary directory that also holds the Unix socket, and removed with the context manager.
TCP connections authenticate with a password (so that URLs carry one, as in production); the socket trusts.
``initdb`` refuses to run as root: as root the server runs as an unprivileged user (``postgres`` when it
exists, else ``nobody``) that owns the temporary directory.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from imagerank.store.redis_server import free_port

USER = "imagerank"
PASSWORD = "imagerank-test-secret"  # a throwaway server's password; tests check it never reaches a record


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


@dataclass
class PostgresServer:
    host: str
    port: int
    user: str
    password: str
    database: str
    root: Path  # temporary directory: data/, socket, log

    def url(self, table: str | None = None, database: str | None = None) -> str:
        """``postgresql://user:password@host:port/db[?table=...]``, the form ``--catalog`` and ``--to`` take."""
        query = f"?table={table}" if table else ""
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{database or self.database}{query}"

    def connect(self, **kwargs):
        import psycopg

        return psycopg.connect(host=self.host, port=self.port, user=self.user, password=self.password,
                               dbname=self.database, **kwargs)


def postgres_bindir() -> Path:
    """The newest ``/usr/lib/postgresql/*/bin`` holding ``initdb`` and ``pg_ctl`` (else ``pg_ctl`` on PATH)."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
                        if Path(p).parent.name.isdigit() else 0)
    for bindir in reversed(candidates):
        if os.access(Path(bindir) / "initdb", os.X_OK) and os.access(Path(bindir) / "pg_ctl", os.X_OK):
            return Path(bindir)
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).parent
    raise PostgresUnavailable("PostgreSQL server binaries (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin "
                              "or on PATH: run `make system-deps` (Debian package postgresql)")


def _server_account() -> tuple[int, int] | None:
    """(uid, gid) to run the server as when this process is root; None when it is not."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return entry.pw_uid, entry.pw_gid
    raise PostgresUnavailable("running as root and no unprivileged account (postgres, nobody) to run PostgreSQL as")


def _run(command: list[str], account: tuple[int, int] | None, what: str, timeout: float = 120) -> None:
    kwargs = {"user": account[0], "group": account[1], "extra_groups": []} if account else {}
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                          env={**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}, **kwargs)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {done.returncode}): {done.stdout.decode(errors='replace')[-1500:]}")


def start_postgres_server(host: str = "127.0.0.1", database: str = "openverse") -> PostgresServer:
    """initdb into a fresh temporary directory and start the server; the caller stops it (:func:`stop`)."""
    bindir = postgres_bindir()
    account = _server_account()
    root = Path(tempfile.mkdtemp(prefix="imagerank-pg-"))
    if account:
        os.chown(root, *account)
        base = root.parent
        if not os.stat(base).st_mode & 0o001:  # the server's user must be able to reach the directory
            shutil.rmtree(root, ignore_errors=True)
            raise PostgresUnavailable(f"{base} is not searchable by the unprivileged server account: set TMPDIR")
    data = root / "data"
    password_file = root / "password"
    password_file.write_text(PASSWORD + "\n")
    if account:
        os.chown(password_file, *account)
    try:
        _run([str(bindir / "initdb"), "-D", str(data), "-U", USER, f"--pwfile={password_file}", "-E", "UTF8",
              "--locale=C.UTF-8", "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync"], account, "initdb")
        password_file.unlink()
        for attempt in range(3):
            port = free_port(host)
            options = (f"-p {port} -k {root} -c listen_addresses={host} -c fsync=off -c synchronous_commit=off "
                       "-c full_page_writes=off -c max_connections=50 -c shared_buffers=64MB")
            try:
                _run([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-o", options,
                      "-w", "-t", "60", "start"], account, "pg_ctl start")
                break
            except RuntimeError:
                if attempt == 2:
                    log = (root / "server.log").read_text(errors="replace")[-1500:] if (root / "server.log").exists() else ""
                    raise RuntimeError(f"PostgreSQL did not start on {host}: {log}") from None
        _run([str(bindir / "createdb"), "-h", str(root), "-p", str(port), "-U", USER, database], account, "createdb")
    except BaseException:
        _stop(bindir, data, account)
        shutil.rmtree(root, ignore_errors=True)
        raise
    return PostgresServer(host, port, USER, PASSWORD, database, root)


def _stop(bindir: Path, data: Path, account) -> None:
    if (data / "postmaster.pid").exists():
        try:
            _run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], account, "pg_ctl stop", 60)
        except (RuntimeError, subprocess.TimeoutExpired):
            _run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], account, "pg_ctl stop", 60)


def stop(server: PostgresServer) -> None:
    _stop(postgres_bindir(), server.root / "data", _server_account())
    shutil.rmtree(server.root, ignore_errors=True)


@contextmanager
def postgres_server(host: str = "127.0.0.1", database: str = "openverse") -> Iterator[PostgresServer]:
    """Run a throwaway PostgreSQL server for the duration of the block."""
    server = start_postgres_server(host, database)
    try:
        yield server
    finally:
        stop(server)


# --------------------------------------------------------------------------------------------------
# An Openverse-shaped ``image`` table, for tests and benchmarks.

#: Openverse's catalog ``image`` table (its DDL, with the numeric key ``id`` the reader partitions on).
IMAGE_TABLE_DDL = """
CREATE TABLE {table} (
    id serial PRIMARY KEY,
    created_on timestamp with time zone NOT NULL,
    updated_on timestamp with time zone NOT NULL,
    identifier uuid,
    foreign_identifier character varying(3000),
    title character varying(5000),
    foreign_landing_url character varying(1000),
    creator character varying(2000),
    creator_url character varying(2000),
    url character varying(3000),
    thumbnail character varying(3000),
    width integer,
    height integer,
    filesize integer,
    license character varying(50) NOT NULL,
    license_version character varying(25),
    provider character varying(80),
    source character varying(80),
    last_synced_with_source timestamp with time zone,
    removed_from_source boolean NOT NULL,
    meta_data jsonb,
    tags jsonb,
    watermarked boolean,
    ingestion_type character varying(1000),
    filetype character varying(5),
    category character varying(80),
    standardized_popularity double precision
)"""


def load_image_table(connection, csv_path: str | Path, table: str = "image", replicate: int = 1) -> int:
    """Create ``table`` and COPY an Openverse CSV export into it (``id`` follows the file's row order, from 1);
    ``replicate`` > 1 appends copies with fresh identifiers (benchmarks). Returns the table's row count."""
    import csv

    with open(csv_path, newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle))
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {table}")
        cursor.execute(IMAGE_TABLE_DDL.format(table=table))
        with open(csv_path, "rb") as handle, \
                cursor.copy(f"COPY {table} ({', '.join(header)}) FROM STDIN WITH (FORMAT csv, HEADER true)") as copy:
            while chunk := handle.read(1 << 20):
                copy.write(chunk)
        original = _count(cursor, table)
        columns = ", ".join(c for c in header if c != "identifier")
        for _ in range(replicate - 1):
            cursor.execute(f"INSERT INTO {table} (identifier, {columns}) SELECT gen_random_uuid(), {columns} "
                           f"FROM {table} WHERE id <= %s ORDER BY id", (original,))
        cursor.execute(f"ANALYZE {table}")
        rows = _count(cursor, table)
    connection.commit()
    return rows


def _count(cursor, table: str) -> int:
    cursor.execute(f"SELECT count(*) FROM {table}")
    return int(cursor.fetchone()[0])

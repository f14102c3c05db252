"""A throw-away PostgreSQL cluster for the tests and benchmarks: Debian's ``postgresql``
binaries, ``initdb``/``pg_ctl`` run as an unprivileged user in a folder of its own,
listening only on a unix socket there (no TCP port, trust authentication for that
socket: nobody else on the machine can reach it through the folder's mode); a cluster for
a client that cannot reach that folder also listens on loopback TCP, with a password.

One cluster per test session (:func:`start_cluster`); each test gets its own database,
copied from a migrated template (``CREATE DATABASE ... TEMPLATE``: milliseconds instead
of a migration per test).  The cluster is created with the "C" collation callproof needs.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

#: The user the server runs as when the tests run as root (initdb refuses root).
SERVER_USER = "nobody"
TEMPLATE = "callproof_template"
_counter = itertools.count(1)


def pg_bin_dir() -> Path | None:
    """Debian's newest ``/usr/lib/postgresql/<version>/bin`` with initdb, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    return Path(found[-1]).parent if found else None


@dataclass
class Cluster:
    root: Path
    bin_dir: Path
    user: str
    port: int = 5432
    databases: list[str] = field(default_factory=list)
    listen: str = ""  # TCP addresses besides the socket ("": none)
    tcp_password: str = ""  # the user's password over TCP (a cluster started with one)
    netns_pid: int | None = None  # the server runs in this process's network namespace (None: the host's)

    @property
    def socket_dir(self) -> Path:
        return self.root / "socket"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        """The ``[storage] url`` of ``database`` (the socket folder as the host)."""
        from urllib.parse import quote

        return f"postgresql://{self.user}@{quote(str(self.socket_dir), safe='')}:{self.port}/{database}"

    def tcp_url(self, database: str = "postgres") -> str:
        """The URL over loopback TCP (a cluster started with ``tcp_password``; the password not in it)."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def _as_server(self, *cmd: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        if os.geteuid() == 0:
            cmd = ("runuser", "-u", self.user, "--", *cmd)
        if self.netns_pid is not None:
            cmd = ("nsenter", f"--target={self.netns_pid}", "--net", *cmd)
        return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=timeout)

    def pg_ctl(self, action: str, *extra: str) -> None:
        self._as_server(str(self.bin_dir / "pg_ctl"), action, "-D", str(self.data_dir), "-w", "-t", "120",
                        "-l", str(self.root / "server.log"),
                        *(("-o", f"-k {self.socket_dir} -c listen_addresses='{self.listen}' -p {self.port}")
                          if action in ("start", "restart") else ()), *extra)

    def execute(self, sql: str, database: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as conn:
            conn.execute(sql.encode())

    def create_template(self) -> None:
        """A database with callproof's schema, the template of every test database."""
        from callproof.storage.db import connect_sync

        self.execute(f"CREATE DATABASE {TEMPLATE}")
        connect_sync(self.url(TEMPLATE)).close()

    def new_database(self, prefix: str = "t") -> str:
        """The URL of a new, migrated database of its own."""
        name = f"{prefix}_{os.getpid()}_{next(_counter)}"
        self.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        self.databases.append(name)
        return self.url(name)

    def drop(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        self.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        self._as_server(str(self.bin_dir / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "immediate",
                        check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def start_cluster(parent: str | os.PathLike[str] | None = None, *, tcp_password: str | None = None,
                  netns_pid: int | None = None) -> Cluster:
    """initdb + start a cluster in a new folder; ``stop()`` it when done.  RuntimeError
    when Debian's ``postgresql`` package is not installed (scripts/setup installs it).

    ``tcp_password``: also listen on a free loopback TCP port, where the user logs in with
    this password (scram-sha-256), for a client that cannot reach the socket's folder (the
    classic AGI script inside the sandbox's chroot).  ``netns_pid``: the server runs in that
    process's network namespace (the package test's machine), its loopback port then 5432, as
    a server on that machine would listen; the socket stays in the folder, for the test."""
    bin_dir = pg_bin_dir()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql; scripts/setup does)")
    user = SERVER_USER if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    root = Path(tempfile.mkdtemp(prefix="callproof-pg-", dir=parent))
    (root / "socket").mkdir()
    if os.geteuid() == 0:
        pw = pwd.getpwnam(user)
        for path in (root, root / "socket"):
            os.chown(path, pw.pw_uid, pw.pw_gid)
    for path in (root, root / "socket"):  # root (the suite) still enters; no other user can
        os.chmod(path, 0o700)
    cluster = Cluster(root, bin_dir, user, netns_pid=netns_pid)
    cluster._as_server(str(bin_dir / "initdb"), "-D", str(cluster.data_dir), "-U", user, "-A", "trust",
                       "--encoding=UTF8", "--locale=C", "--no-sync")
    with open(cluster.data_dir / "postgresql.conf", "a") as conf:
        # a throw-away cluster: no fsync (the tests' SIGKILLs hit clients, not the server's disk)
        conf.write("\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 300\n"
                   "shared_buffers = 32MB\n")
    if tcp_password is not None:
        import socket

        if netns_pid is not None:  # a loopback of its own: nothing else listens there
            cluster.port, cluster.listen = 5432, "127.0.0.1"
        else:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                cluster.port, cluster.listen = probe.getsockname()[1], "127.0.0.1"
        cluster.tcp_password = tcp_password
        (cluster.data_dir / "pg_hba.conf").write_text(
            "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n")
    cluster.pg_ctl("start")
    deadline = time.monotonic() + 60
    while not (cluster.socket_dir / f".s.PGSQL.{cluster.port}").exists():
        if time.monotonic() > deadline:  # pragma: no cover
            raise RuntimeError(f"PostgreSQL did not start: {(root / 'server.log').read_text()[-2000:]}")
        time.sleep(0.05)
    if tcp_password is not None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(cluster.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(user), sql.Literal(tcp_password)))
    return cluster

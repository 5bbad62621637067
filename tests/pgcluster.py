"""A throwaway PostgreSQL cluster for the tests, or an existing server named by the environment.

``PgCluster.from_env_or_start()`` uses the server in AUTOBYTEUS_TEST_DATABASE_URL when that is set;
otherwise it runs ``initdb`` into a temporary directory and starts a private server on a free port
of 127.0.0.1 (unix socket inside the same directory, trust authentication, fsync left on so the
tests exercise the durable configuration). Missing server binaries are an error, not a skip: CI
must run the PostgreSQL backend.

PostgreSQL refuses to run as root, and CI runs the tests as root: then the directory is handed to
the unprivileged ``postgres`` user (created if absent) and the server binaries run as that user.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Any

ENV_URL = "AUTOBYTEUS_TEST_DATABASE_URL"
SERVER_USER = "postgres"
SUPERUSER = "postgres"
_BINARIES = ("initdb", "pg_ctl", "postgres")


def _find_bindir() -> str:
    """The directory holding initdb, pg_ctl and postgres (PATH first, then Debian's layout)."""
    candidates: list[str] = []
    on_path = shutil.which("initdb")
    if on_path:
        # Follow symlinks (/usr/local/bin/initdb -> /usr/lib/postgresql/15/bin/initdb) so that
        # pg_ctl finds the postgres binary next to itself.
        candidates.append(os.path.dirname(os.path.realpath(on_path)))
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    versions.sort(key=lambda p: _version_of(p), reverse=True)
    candidates.extend(versions)
    for bindir in candidates:
        if all(os.access(os.path.join(bindir, b), os.X_OK) for b in _BINARIES):
            return bindir
    raise RuntimeError(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found on PATH or under "
        "/usr/lib/postgresql/*/bin. Install the PostgreSQL server (e.g. apt-get install "
        f"postgresql) or point {ENV_URL} at a server the tests may create databases on."
    )


def _version_of(bindir: str) -> tuple[int, ...]:
    name = os.path.basename(os.path.dirname(bindir))
    try:
        return tuple(int(part) for part in name.split("."))
    except ValueError:
        return (0,)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ensure_server_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
             SERVER_USER],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(SERVER_USER)


def _with_database(url: str, database: str) -> str:
    from sqlalchemy.engine import make_url

    u = make_url(url)
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    return u.set(database=database).render_as_string(hide_password=False)


def _libpq_url(url: str) -> str:
    """A SQLAlchemy URL as libpq/psycopg understands it (no ``+driver``)."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class PgCluster:
    """A PostgreSQL server that tests may create databases on."""

    def __init__(
        self,
        admin_url: str,
        *,
        basedir: str | None = None,
        bindir: str | None = None,
        port: int | None = None,
        run_as: str | None = None,
    ) -> None:
        self._admin_url = admin_url
        self.basedir = basedir
        self.bindir = bindir
        self.port = port
        self._run_as = run_as
        self._created: list[str] = []
        self._stopped = False

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def from_env_or_start(cls) -> PgCluster:
        url = os.environ.get(ENV_URL)
        if url:
            return cls(_with_database(url, _url_database(url) or "postgres"))
        return cls.start()

    @classmethod
    def start(cls) -> PgCluster:
        bindir = _find_bindir()
        basedir = tempfile.mkdtemp(prefix="autobyteus-pg-")
        run_as: str | None = None
        if os.geteuid() == 0:
            user = _ensure_server_user()
            run_as = user.pw_name
            os.chown(basedir, user.pw_uid, user.pw_gid)
        cluster = cls("", basedir=basedir, bindir=bindir, run_as=run_as)
        try:
            cluster._initdb()
            cluster._start_first_time()
        except BaseException:
            cluster._remove_dir()
            raise
        # A crashed or interrupted session must not leave a server running behind it.
        atexit.register(cluster.stop)
        return cluster

    # -- public API ----------------------------------------------------------------------------
    @property
    def admin_url(self) -> str:
        """A ``postgresql+psycopg://`` URL of the maintenance database, as superuser."""
        return self._admin_url

    @property
    def managed(self) -> bool:
        """True when this object started the server (and may stop or restart it)."""
        return self.basedir is not None

    def create_database(self, name: str) -> str:
        """Create an empty database ``name`` and return its ``postgresql+psycopg://`` URL."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(_libpq_url(self._admin_url), autocommit=True) as conn:
            # On a shared server a previous run may have left a database of this name behind.
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)
            ))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self._created.append(name)
        return _with_database(self._admin_url, name)

    def stop(self) -> None:
        """Stop the server and remove its directory (external server: drop our databases)."""
        if self._stopped:
            return
        self._stopped = True
        if not self.managed:
            self._drop_created()
            return
        try:
            self._pg_ctl("stop", "-m", "fast", "-w", "-t", "30", check=False)
        finally:
            if self._server_running():
                self._pg_ctl("stop", "-m", "immediate", "-w", "-t", "30", check=False)
            self._remove_dir()

    def restart(self, mode: str = "fast") -> None:
        """Stop and start the server again (connections are cut; data is kept)."""
        self.stop_server(mode)
        self.start_server()

    def stop_server(self, mode: str = "fast") -> None:
        """Stop the server but keep its data, for tests of a database that went away."""
        self._require_managed("stop_server")
        self._pg_ctl("stop", "-m", mode, "-w", "-t", "60", check=mode == "immediate")
        if self._server_running():
            # A fast shutdown writes a checkpoint of every database the tests created; on a
            # loaded machine that can outlast the wait. Immediate is a crash: start recovers.
            self._pg_ctl("stop", "-m", "immediate", "-w", "-t", "60")

    def start_server(self) -> None:
        self._require_managed("start_server")
        self._pg_ctl("start", "-w", "-t", "180", "-l", self._path("server.log"))

    # -- internals -----------------------------------------------------------------------------
    def _path(self, *parts: str) -> str:
        assert self.basedir is not None
        return os.path.join(self.basedir, *parts)

    def _require_managed(self, what: str) -> None:
        if not self.managed:
            raise RuntimeError(f"{what}() needs a server started by the tests, not {ENV_URL}")

    def _run(self, argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        if self._run_as is not None:
            argv = ["runuser", "-u", self._run_as, "--", *argv]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        # cwd: the server user may not be allowed into the caller's working directory.
        proc = subprocess.run(
            argv, cwd=self.basedir, env=env, capture_output=True, text=True, timeout=180
        )
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
                + self._log_tail()
            )
        return proc

    def _pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert self.bindir is not None
        return self._run(
            [os.path.join(self.bindir, "pg_ctl"), "-D", self._path("data"), *args], check=check
        )

    def _initdb(self) -> None:
        assert self.bindir is not None
        self._run([
            os.path.join(self.bindir, "initdb"),
            "-D", self._path("data"),
            "-U", SUPERUSER,
            "-A", "trust",
            "-E", "UTF8",
            "--locale=C",
        ])
        socket_dir = self._path("socket")
        os.mkdir(socket_dir, 0o700)
        if self._run_as is not None:
            user = pwd.getpwnam(self._run_as)
            os.chown(socket_dir, user.pw_uid, user.pw_gid)

    def _write_settings(self, port: int) -> None:
        # Appended to postgresql.conf (later lines win) so that restart() keeps the same port.
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(port),
            "unix_socket_directories": f"'{self._path('socket')}'",
            "fsync": "on",
            "synchronous_commit": "on",
            "max_connections": "300",
            "shared_buffers": "32MB",
        }
        with open(self._path("data", "postgresql.conf"), "a", encoding="utf-8") as f:
            f.write("\n# autobyteus test cluster\n")
            for name, value in settings.items():
                f.write(f"{name} = {value}\n")

    def _start_first_time(self) -> None:
        last_error: Exception | None = None
        # Another process may take the free port between our probe and the server's bind.
        for _ in range(5):
            port = _free_port()
            self._write_settings(port)
            try:
                self.start_server()
            except RuntimeError as exc:
                last_error = exc
                time.sleep(0.2)
                continue
            self.port = port
            self._admin_url = f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{port}/postgres"
            return
        raise RuntimeError(f"the test PostgreSQL server did not start: {last_error}")

    def _server_running(self) -> bool:
        if self.bindir is None or self.basedir is None or not os.path.isdir(self._path("data")):
            return False
        return self._pg_ctl("status", check=False).returncode == 0

    def _drop_created(self) -> None:
        try:
            import psycopg
            from psycopg import sql

            with psycopg.connect(_libpq_url(self._admin_url), autocommit=True) as conn:
                for name in self._created:
                    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(name)
                    ))
        except Exception:
            pass  # best effort: the server is someone else's

    def _remove_dir(self) -> None:
        if self.basedir is not None:
            shutil.rmtree(self.basedir, ignore_errors=True)

    def _log_tail(self) -> str:
        if self.basedir is None:
            return ""
        try:
            with open(self._path("server.log"), encoding="utf-8", errors="replace") as f:
                return "\nserver log:\n" + "".join(f.readlines()[-20:])
        except OSError:
            return ""

    def __repr__(self) -> str:
        where: Any = self.basedir or "external"
        return f"PgCluster({where!r}, port={self.port})"


def _url_database(url: str) -> str | None:
    from sqlalchemy.engine import make_url

    return make_url(url).database

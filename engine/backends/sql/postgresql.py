"""PostgreSQL (``PostgresStore``): psycopg 3.

Several server processes (on several hosts) may share one database, and their write transactions
run in parallel: each runs at SERIALIZABLE, so PostgreSQL's serializable snapshot isolation (SSI)
tracks every read of it, point reads and scans alike (predicate locks on the index pages a scan
visits cover the keys it did not find), and fails one of two transactions whose reads and writes
could not have happened one after the other. That failure (SQLSTATE 40001, or a deadlock 40P01)
is ``WriteConflictError``: nothing of the transaction was applied, and the caller runs it again
(``engine.indexes.transact`` does, with bounded, jittered attempts). Read-modify-write therefore
cannot lose an update, and transactions on disjoint keys commit side by side. SSI may also fail a
transaction that did not really conflict (keys on one index page; it tracks pages, not keys):
that costs a retry, never correctness. Insert-if-absent is ``INSERT ... ON CONFLICT DO NOTHING``
(RETURNING names the winner); when the key was inserted by a transaction that committed after our
snapshot, SERIALIZABLE raises a serialization failure rather than answering from a stale view.

Read transactions run REPEATABLE READ READ ONLY (one snapshot, taken at begin): they never wait
for writers and never fail. Until 2026-12 every write transaction took one advisory lock for the
whole database; that lock is gone (it is still taken once, to create the tables). ``lock_timeout``
(default 30 s) bounds a wait for a row another writer holds (StoreLockedError), and
``idle_in_transaction_session_timeout`` makes the server kill a session left idle inside a
transaction (a hung client), so one stuck process cannot hold rows for long. Keep write
transactions short (no network calls inside them): the longer one runs, the likelier its conflicts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url

from engine import errors
from engine.backends.common import check_metadata, metadata_record
from engine.backends.sql.common import (
    PAGE_STATEMENTS,
    PIN_SNAPSHOT,
    READ_META,
    driver_errors,
    kv,
    page_params,
    read_metadata,
    scan_pages,
    schema,
    translate,
    write_metadata,
)
from engine.interface import Store, Transaction, check_key, check_value

#: The key of the PostgreSQL advisory lock taken while creating the tables ("autobyte" in ASCII).
#: Advisory locks are per database, so stores in different databases of one server do not contend.
ADVISORY_LOCK_KEY = 0x6175746F62797465

#: The point statements, as psycopg runs them (see _ConnTransaction).
_SQL_GET = "SELECT value FROM kv WHERE key = %s"
_SQL_UPSERT = (
    "INSERT INTO kv (key, value) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = "
    "excluded.value"
)
_SQL_INSERT_IF_ABSENT = (
    "INSERT INTO kv (key, value) VALUES (%s, %s) ON CONFLICT (key) DO NOTHING RETURNING key"
)
_SQL_DELETE = "DELETE FROM kv WHERE key = %s"

_PG_TABLE_EXISTS = sa.text(
    "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c"
    " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    " WHERE c.relname = :name AND n.nspname = current_schema())"
)
_PG_LOCK = sa.select(sa.func.pg_advisory_xact_lock(sa.bindparam("lock", type_=sa.BigInteger)))


class _ConnTransaction(Transaction):
    """A transaction whose statements run directly on one SQLAlchemy connection: PostgreSQL's
    read and write transactions."""

    def __init__(self, conn: Connection, release: Callable[[_ConnTransaction], None]) -> None:
        self._conn = conn
        self._release = release
        # Point reads and writes go to psycopg's cursor directly: through SQLAlchemy's execute
        # they cost about twice the client CPU (measured), which bounds throughput once many
        # threads write. The transaction itself (begin, commit, rollback) stays SQLAlchemy's.
        self._cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        # The first driver error of the transaction. PostgreSQL aborts the whole transaction on
        # any error, and its COMMIT then silently rolls back: commit() must not report success.
        self._failure: errors.EngineError | None = None

    def _check_usable(self) -> None:
        self._check_open()
        if self._failure is not None:
            # PostgreSQL ignores every statement after a failed one ("current transaction is
            # aborted"): report the failure that counts, so that a conflict stays retryable.
            raise type(self._failure)(f"the transaction failed earlier: {self._failure}")

    def _execute(self, stmt: Any, params: Any = None) -> Any:
        self._check_usable()
        try:
            return self._conn.execute(stmt, params)
        except Exception as exc:
            raise self._failed(exc) from exc

    def _failed(self, exc: Exception) -> errors.EngineError:
        translated = translate(exc)
        if self._failure is None:
            self._failure = translated
        return translated

    def _point(self, sql: str, params: tuple[bytes, ...]) -> Any:
        """Run one of the point statements on psycopg's cursor; returns the cursor."""
        self._check_usable()
        try:
            return self._cursor.execute(sql, params)
        except Exception as exc:
            raise self._failed(exc) from exc

    def get(self, key: bytes) -> bytes | None:
        key = check_key(key)
        row = self._point(_SQL_GET, (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def _scan(
        self, lo: bytes, hi: bytes | None, reverse: bool, limit: int | None
    ) -> Iterator[tuple[bytes, bytes]]:
        return scan_pages(self._page, lo, hi, reverse, limit)

    def _page(
        self, lower: bytes, inclusive: bool, upper: bytes | None, reverse: bool, size: int
    ) -> Any:
        stmt = PAGE_STATEMENTS[inclusive, upper is not None, reverse]
        return self._execute(stmt, page_params(lower, upper, size)).all()

    def commit(self) -> None:
        self._check_open()
        if self.write and self._failure is not None:
            self.abort()
            raise type(self._failure)(
                f"the transaction was rolled back after an earlier error: {self._failure}"
            )
        self._closed = True
        try:
            with driver_errors():
                if self.write:
                    self._conn.commit()
                else:
                    self._conn.rollback()  # nothing to keep; ends the snapshot
        finally:
            self._end()

    def abort(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            with driver_errors():
                self._conn.rollback()
        except errors.EngineError:
            pass  # the server ends an abandoned transaction itself; nothing was written
        finally:
            self._end()

    def _end(self) -> None:
        try:
            self._conn.close()  # back to the pool
        except Exception:
            pass
        self._release(self)


class _PgWriteTransaction(_ConnTransaction):
    write = True
    parallel_writes = True

    def put(self, key: bytes, value: bytes, *, overwrite: bool = True) -> bool:
        key = check_key(key)
        value = check_value(value)
        if overwrite:
            self._point(_SQL_UPSERT, (key, value))
            return True
        return self._point(_SQL_INSERT_IF_ABSENT, (key, value)).fetchone() is not None

    def delete(self, key: bytes) -> bool:
        key = check_key(key)
        return bool(self._point(_SQL_DELETE, (key,)).rowcount)


def _no_release(txn: _ConnTransaction) -> None:
    pass


class PostgresStore(Store):
    """A PostgreSQL database shared safely by any number of processes (see the module docstring)."""

    provider = "postgresql"

    def __init__(
        self,
        url: str,
        *,
        readonly: bool = False,
        create: bool = True,
        pool_size: int = 10,
        max_overflow: int = 20,
        pool_timeout: float = 30.0,
        pool_pre_ping: bool = True,
        connect_timeout: int = 10,
        lock_timeout: float = 30.0,
        idle_in_transaction_timeout: float = 120.0,
    ) -> None:
        try:
            import psycopg  # noqa: F401  (fail here, with the install command, not at first use)
        except ImportError as exc:
            from engine.registry import SQL_INSTALL_COMMAND

            raise errors.ConfigurationError(
                f"the 'postgresql' provider needs psycopg 3; install it with: {SQL_INSTALL_COMMAND}"
            ) from exc
        self.readonly = readonly
        self._closed = False
        self._local = threading.local()
        self._where = make_url(url).render_as_string(hide_password=True)
        # pool_pre_ping: after a server restart every pooled connection is dead; testing each one
        # at checkout costs a round trip but spares callers one failed request per connection.
        self._engine = sa.create_engine(
            url,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=pool_timeout,
            pool_pre_ping=pool_pre_ping,
            connect_args={"connect_timeout": connect_timeout},
        )
        session_settings = {
            "lock_timeout": int(lock_timeout * 1000),
            "idle_in_transaction_session_timeout": int(idle_in_transaction_timeout * 1000),
        }

        @event.listens_for(self._engine, "connect")
        def on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Session settings must not live in a transaction that the pool's reset rolls back.
            autocommit = dbapi_conn.autocommit
            dbapi_conn.autocommit = True
            try:
                for name, value in session_settings.items():
                    dbapi_conn.execute(f"SET {name} = {int(value)}")
            finally:
                dbapi_conn.autocommit = autocommit

        try:
            with driver_errors():
                self._metadata = self._open_schema(create and not readonly)
        except BaseException:
            self._engine.dispose()
            raise

    def _open_schema(self, create: bool) -> dict[str, Any]:
        with self._engine.connect() as conn:
            with conn.begin():
                if not self._has_table(conn, "kv_meta"):
                    if not create:
                        raise errors.StoreNotFoundError(f"no store in {self._where}")
                    # Two processes may create the store at once: the writer lock makes them take
                    # turns, and the second one finds the tables made by the first.
                    conn.execute(_PG_LOCK, {"lock": ADVISORY_LOCK_KEY})
                    if not self._has_table(conn, "kv_meta"):
                        if self._has_table(conn, "kv"):
                            raise errors.IncompatibleStoreError(
                                f"{self._where} has a kv table but no kv_meta: not a store of "
                                "this engine"
                            )
                        schema.create_all(conn)
                        write_metadata(conn, metadata_record(self.provider))
                meta = read_metadata(conn.execute(READ_META), self._where)
        check_metadata(meta, self.provider, self._where)
        return meta

    @staticmethod
    def _has_table(conn: Connection, name: str) -> bool:
        # Ask pg_class with this statement's snapshot. to_regclass() would answer from the
        # session's catalog cache, which can still miss a table that another process committed
        # while we waited for the lock (seen: kv found, kv_meta not).
        return bool(conn.execute(_PG_TABLE_EXISTS, {"name": name}).scalar())

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self._metadata)

    def begin(self, write: bool = False) -> Transaction:
        if self._closed:
            raise errors.StoreClosedError(f"the postgresql store {self._where} is closed")
        if write:
            return self._begin_write()
        with driver_errors():
            conn = self._engine.connect().execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
            try:
                conn.begin()
                # REPEATABLE READ takes its snapshot at the first statement: take it now, so that
                # the transaction sees the store as of begin() as on the other backends.
                conn.execute(PIN_SNAPSHOT)
            except BaseException:
                conn.close()
                raise
        return _ConnTransaction(conn, _no_release)

    def _begin_write(self) -> Transaction:
        if self.readonly:
            raise errors.ReadOnlyError(f"the postgresql store {self._where} was opened read-only")
        if getattr(self._local, "writing", False):
            # As on every backend: the second transaction could wait for a row that the first,
            # which this thread would never get back to, holds.
            raise errors.EngineError("a write transaction is already open in this thread")
        with driver_errors():
            conn = self._engine.connect().execution_options(isolation_level="SERIALIZABLE")
            try:
                conn.begin()
            except BaseException:
                conn.close()
                raise
        self._local.writing = True
        return _PgWriteTransaction(conn, self._write_ended)

    def _write_ended(self, txn: _ConnTransaction) -> None:
        self._local.writing = False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._engine.dispose()

    def stats(self) -> dict[str, Any]:
        out = super().stats()
        with self.begin() as txn:
            assert isinstance(txn, _ConnTransaction)
            out["keys"] = txn._execute(sa.select(sa.func.count()).select_from(kv)).scalar()
            out["bytes"] = txn._execute(
                sa.select(sa.func.pg_total_relation_size(sa.func.to_regclass("kv")))
            ).scalar()
        out["database"] = self._where
        return out

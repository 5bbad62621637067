"""The SQL backends: SQLite and PostgreSQL, SQLAlchemy Core over one key-value table.

Both keep every pair in ``kv`` (``key`` BLOB/BYTEA primary key, ``value`` BLOB/BYTEA) and the
store's metadata (format, version, backend) in ``kv_meta``, one JSON-encoded value per field. SQLite
compares BLOBs and PostgreSQL compares BYTEA with memcmp, so ``ORDER BY key`` is the engine's
bytewise order without any collation. Statements are SQLAlchemy Core; no ORM anywhere.

SQLite (``SqliteStore``): ``<path>/store.sqlite3`` in WAL mode. Writes go through the engine's group
commit (:class:`engine.base.BatchingStore`) on one dedicated writer connection: a batch is one
``BEGIN IMMEDIATE`` ... ``COMMIT``, so the database's write lock is taken when the batch opens (not
at the first write, which would let two processes' deferred transactions deadlock on lock
upgrade) and one fsync of the WAL carries every member of the batch. ``synchronous=FULL`` (the
default, ``sync=True``) syncs the WAL at each commit, which is what makes a WAL commit survive
power loss; ``sync=False`` gives NORMAL (durable against a process crash only). The pysqlite
driver's own implicit BEGIN is disabled (``isolation_level=None``) and BEGIN is emitted from
SQLAlchemy's ``begin`` event, as SQLAlchemy's pysqlite documentation describes, so the kind of
BEGIN is ours to choose. Read transactions take a pooled read-only connection, ``BEGIN`` (deferred)
and read once at once, which pins one WAL snapshot for the transaction's life: a reader sees
neither uncommitted nor later-committed writes, and never blocks or waits for the writer.

PostgreSQL (``PostgresStore``): psycopg 3. Several server processes may share one database, so the
single-writer rule that LMDB and SQLite get from a file lock is taken from the database instead:
every write transaction starts with ``pg_advisory_xact_lock(ADVISORY_LOCK_KEY)`` and runs at READ
COMMITTED. Writers are serialised across every process and machine, and because the lock is taken
before the transaction's first read and released only after the previous holder's commit became
visible, each statement sees everything committed before the lock was granted: read-modify-write
cannot lose an update. Insert-if-absent is ``INSERT ... ON CONFLICT DO NOTHING`` (its row count
tells the winner), which is atomic even without the lock. Read transactions run REPEATABLE READ
READ ONLY (one snapshot, taken at begin) and never take the lock, so readers never wait for
writers. Why not SERIALIZABLE without the lock: it would surface serialization failures to every
caller, and the engine's interface has no retry loop.

Scaling limit of that choice: one write transaction at a time per database, across all processes.
A writer waits for the previous one's round trips and commit flush, so write throughput is bounded
by about 1 / (round trips + fsync) of one transaction (hundreds to a few thousand per second on
one LAN), however many server processes there are; reads scale with the server. Keep write
transactions short (no network calls inside them). ``lock_timeout`` (default 30 s) bounds the wait
(StoreLockedError), and ``idle_in_transaction_session_timeout`` makes the server kill a session
that holds the lock while idle (a hung client), so one stuck process cannot stop every writer.

Errors: every driver exception goes through :func:`_translate` (the one choke point) and leaves as
an :mod:`engine.errors` class. A commit that fails with BackendUnavailableError (the connection
dropped during COMMIT) may or may not have been applied; retrying must be safe for the caller.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, make_url

from engine import errors
from engine.base import (
    BatchingStore,
    Store,
    Transaction,
    check_key,
    check_limit,
    check_metadata,
    check_value,
    metadata_record,
    out_of_space,
    scan_bounds,
    unwritable,
)

SQLITE_FILENAME = "store.sqlite3"

#: The key of the PostgreSQL advisory lock that serialises writers ("autobyte" in ASCII). Advisory
#: locks are per database, so stores in different databases of one server do not contend.
ADVISORY_LOCK_KEY = 0x6175746F62797465

#: Scans read in pages (keyset pagination) so that a large range is never held in memory at once
#: and a ``limit=1`` scan costs one small query; pages grow up to this size.
_FIRST_PAGE = 32
_MAX_PAGE = 1024

_schema = sa.MetaData()
kv = sa.Table(
    "kv",
    _schema,
    sa.Column("key", sa.LargeBinary, primary_key=True),
    sa.Column("value", sa.LargeBinary, nullable=False),
    # SQLite: the table is its primary-key B-tree, so a key-range scan reads the table in order.
    sqlite_with_rowid=False,
)
kv_meta = sa.Table(
    "kv_meta",
    _schema,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

_GET = sa.select(kv.c.value).where(kv.c.key == sa.bindparam("k"))
_DELETE = kv.delete().where(kv.c.key == sa.bindparam("k"))
_READ_META = sa.select(kv_meta.c.name, kv_meta.c.value)
#: Any read of the database: in a fresh transaction it fixes the snapshot the transaction sees.
_PIN_SNAPSHOT = sa.select(kv_meta.c.name).limit(1)

_sqlite_insert = sqlite_dialect.insert(kv)
_SQLITE_UPSERT = _sqlite_insert.on_conflict_do_update(
    index_elements=[kv.c.key], set_={"value": _sqlite_insert.excluded.value}
)
_pg_insert = pg_dialect.insert(kv)
_PG_UPSERT = _pg_insert.on_conflict_do_update(
    index_elements=[kv.c.key], set_={"value": _pg_insert.excluded.value}
)
#: RETURNING names the winner: SQLAlchemy does not report a row count for INSERT on psycopg.
_PG_INSERT_IF_ABSENT = _pg_insert.on_conflict_do_nothing(index_elements=[kv.c.key]).returning(
    kv.c.key
)
_PG_TABLE_EXISTS = sa.text(
    "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c"
    " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    " WHERE c.relname = :name AND n.nspname = current_schema())"
)
_PG_LOCK = sa.select(sa.func.pg_advisory_xact_lock(sa.bindparam("lock", type_=sa.BigInteger)))


# -- the one choke point for driver errors ---------------------------------------------------------

# SQLite primary result codes (the low byte of an extended code).
_SQLITE_ERROR = 1
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_READONLY = 8
_SQLITE_IOERR = 10
_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_NOTADB = 26
_SQLITE_IOERR_FSYNC = 10 | (4 << 8)
_SQLITE_IOERR_DIR_FSYNC = 10 | (5 << 8)


def _translate_sqlite(orig: sqlite3.Error) -> errors.EngineError:
    code = getattr(orig, "sqlite_errorcode", None)
    message = f"sqlite: {orig} ({getattr(orig, 'sqlite_errorname', 'no code')})"
    if code is None:
        if isinstance(orig, sqlite3.OperationalError):
            return errors.BackendUnavailableError(message)
        return errors.EngineError(message)
    primary = code & 0xFF
    if primary == _SQLITE_FULL:
        return errors.StoreFullError(message)
    if primary in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return errors.StoreLockedError(message)
    if primary in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return errors.CorruptStoreError(message)
    if primary == _SQLITE_READONLY:
        return errors.ReadOnlyError(message)
    if code in (_SQLITE_IOERR_FSYNC, _SQLITE_IOERR_DIR_FSYNC):
        return errors.DurabilityError(message)
    if primary == _SQLITE_ERROR:
        # A plain SQL error ("no such table"): a bug or a tampered store, not an outage.
        return errors.EngineError(message)
    if isinstance(orig, sqlite3.OperationalError):  # IOERR, CANTOPEN, NOMEM, ...
        return errors.BackendUnavailableError(message)
    return errors.EngineError(message)


def _translate_psycopg(orig: Exception, psycopg: Any) -> errors.EngineError:
    state: str = getattr(orig, "sqlstate", None) or ""
    message = f"postgresql: {orig}".strip() + (f" (SQLSTATE {state})" if state else "")
    if state == "53100":  # disk_full
        return errors.StoreFullError(message)
    if state in ("40001", "40P01"):  # serialization_failure, deadlock_detected
        return errors.ConflictError(message)
    if state == "55P03":  # lock_not_available: lock_timeout waiting for the writer lock
        return errors.StoreLockedError(message)
    if state in ("XX001", "XX002"):  # data_corrupted, index_corrupted
        return errors.CorruptStoreError(message)
    if state == "25006":  # read_only_sql_transaction
        return errors.ReadOnlyError(message)
    if state == "42P01":  # undefined_table: the store's tables were dropped under us
        return errors.StoreNotFoundError(message)
    if (
        state.startswith(("08", "53", "57P"))  # connection, resources, admin/crash shutdown
        or isinstance(orig, (psycopg.OperationalError, psycopg.InterfaceError))
    ):
        return errors.BackendUnavailableError(message)
    return errors.EngineError(message)


def _translate(exc: BaseException) -> errors.EngineError:
    """The engine error for a driver or SQLAlchemy exception (engine errors pass through)."""
    if isinstance(exc, errors.EngineError):
        return exc
    orig = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
    if isinstance(orig, sqlite3.Error):
        return _translate_sqlite(orig)
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None and isinstance(orig, psycopg.Error):
        return _translate_psycopg(orig, psycopg)
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return errors.BackendUnavailableError(f"connection lost: {exc}")
    if isinstance(exc, sa_exc.TimeoutError):
        return errors.BackendUnavailableError(f"no database connection free: {exc}")
    return errors.EngineError(f"{type(exc).__name__}: {exc}")


_DRIVER_ERRORS = (sa_exc.SQLAlchemyError, sqlite3.Error)


@contextmanager
def _driver_errors() -> Iterator[None]:
    try:
        yield
    except _DRIVER_ERRORS as exc:
        raise _translate(exc) from exc
    except Exception as exc:
        psycopg = sys.modules.get("psycopg")
        if psycopg is not None and isinstance(exc, psycopg.Error):
            raise _translate(exc) from exc
        raise


# -- shared pieces --------------------------------------------------------------------------------


def _scan_pages(
    execute: Callable[[Any], Any],
    lo: bytes,
    hi: bytes | None,
    reverse: bool,
    limit: int | None,
) -> Iterator[tuple[bytes, bytes]]:
    """Pairs with ``lo <= key < hi`` in key order, read page by page (keyset pagination).

    Each page continues strictly after the last key of the previous one, so the pages neither
    repeat nor skip a key within one snapshot (or under the writer lock).
    """
    remaining = limit
    page = _FIRST_PAGE if limit is None else min(limit, _FIRST_PAGE)
    lower, lower_inclusive, upper = lo, True, hi
    while remaining is None or remaining > 0:
        size = page if remaining is None else min(page, remaining)
        conditions = [kv.c.key >= lower if lower_inclusive else kv.c.key > lower]
        if upper is not None:
            conditions.append(kv.c.key < upper)
        stmt = (
            sa.select(kv.c.key, kv.c.value)
            .where(*conditions)
            .order_by(kv.c.key.desc() if reverse else kv.c.key.asc())
            .limit(size)
        )
        rows = execute(stmt).all()
        for key, value in rows:
            yield bytes(key), bytes(value)
        if len(rows) < size:
            return
        if remaining is not None:
            remaining -= len(rows)
        if reverse:
            upper = bytes(rows[-1][0])
        else:
            lower, lower_inclusive = bytes(rows[-1][0]), False
        page = min(page * 4, _MAX_PAGE)


def _read_metadata(conn: Connection, where: str) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for name, raw in conn.execute(_READ_META):
        try:
            meta[name] = json.loads(raw)
        except ValueError as exc:
            raise errors.CorruptStoreError(
                f"{where}: kv_meta field {name!r} is not JSON: {raw!r}"
            ) from exc
    return meta


def _write_metadata(conn: Connection, meta: dict[str, Any]) -> None:
    conn.execute(
        kv_meta.insert(), [{"name": k, "value": json.dumps(v)} for k, v in meta.items()]
    )


class _ConnTransaction(Transaction):
    """A transaction whose statements run directly on one SQLAlchemy connection.

    Used for every read transaction, and for PostgreSQL's write transactions.
    """

    def __init__(self, conn: Connection, release: Callable[[_ConnTransaction], None]) -> None:
        self._conn = conn
        self._release = release
        # The first driver error of the transaction. PostgreSQL aborts the whole transaction on
        # any error, and its COMMIT then silently rolls back: commit() must not report success.
        self._failure: errors.EngineError | None = None

    def _check_open(self) -> None:
        if self._closed:
            raise errors.TransactionClosedError("the transaction is already closed")

    def _execute(self, stmt: Any, params: Any = None) -> Any:
        self._check_open()
        try:
            return self._conn.execute(stmt, params)
        except Exception as exc:
            translated = _translate(exc)
            if self._failure is None:
                self._failure = translated
            raise translated from exc

    def get(self, key: bytes) -> bytes | None:
        key = check_key(key)
        row = self._execute(_GET, {"k": key}).first()
        return None if row is None else bytes(row[0])

    def scan(
        self,
        start: bytes | None = None,
        end: bytes | None = None,
        *,
        prefix: bytes | None = None,
        reverse: bool = False,
        limit: int | None = None,
    ) -> Iterator[tuple[bytes, bytes]]:
        self._check_open()
        check_limit(limit)
        lo, hi = scan_bounds(start, end, prefix)
        if hi is not None and hi <= lo:
            return iter(())
        return _scan_pages(self._execute, lo, hi, reverse, limit)

    def commit(self) -> None:
        self._check_open()
        if self.write and self._failure is not None:
            self.abort()
            raise type(self._failure)(
                f"the transaction was rolled back after an earlier error: {self._failure}"
            )
        self._closed = True
        try:
            with _driver_errors():
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
            with _driver_errors():
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

    def put(self, key: bytes, value: bytes, *, overwrite: bool = True) -> bool:
        key = check_key(key)
        value = check_value(value)
        if overwrite:
            self._execute(_PG_UPSERT, {"key": key, "value": value})
            return True
        inserted = self._execute(_PG_INSERT_IF_ABSENT, {"key": key, "value": value}).first()
        return inserted is not None

    def delete(self, key: bytes) -> bool:
        key = check_key(key)
        return bool(self._execute(_DELETE, {"k": key}).rowcount)


def _no_release(txn: _ConnTransaction) -> None:
    pass


# -- SQLite ---------------------------------------------------------------------------------------


class SqliteStore(BatchingStore):
    """A SQLite database in WAL mode, ``<path>/store.sqlite3``, with group-committed writes."""

    provider = "sqlite"

    def __init__(
        self,
        path: str,
        *,
        readonly: bool = False,
        create: bool = True,
        sync: bool = True,
        busy_timeout: float = 30.0,
        idle_readers: int = 8,
    ) -> None:
        super().__init__()
        self.path = path
        self.readonly = readonly
        self.sync = sync
        self.filename = os.path.join(path, SQLITE_FILENAME)
        self._busy_timeout = busy_timeout
        self._closed = False
        self._writer_engine: sa.Engine | None = None
        self._writer_conn: Connection | None = None
        #: Pragmas as read back from the writer connection when it was opened.
        self.pragmas: dict[str, Any] = {}
        if not os.path.exists(self.filename):
            if readonly or not create:
                raise errors.StoreNotFoundError(f"no sqlite store at {self.filename}")
            os.makedirs(path, exist_ok=True)
        # Readers open the file read-only whatever the store's mode: they must never write, and
        # a read-only open cannot create an empty database by accident.
        self._reader_engine = self._make_engine(
            "ro", "BEGIN", sa.pool.QueuePool, pool_size=idle_readers, max_overflow=-1
        )
        try:
            with _driver_errors():
                if not readonly:
                    self._writer_engine = self._make_engine(
                        "rwc" if create else "rw", "BEGIN IMMEDIATE", sa.pool.NullPool
                    )
                    self._writer_conn = self._writer_engine.connect()
                    self._init_schema(self._writer_conn, create)
                self._metadata = self._load_metadata()
        except errors.EngineError as exc:
            self._dispose()
            reason = None if readonly else unwritable(path)
            if reason is not None:
                # SQLite says only "unable to open database file": name the file and the cause.
                raise errors.ReadOnlyError(
                    f"cannot open {self.filename} for writing: {reason}"
                ) from exc
            raise
        except BaseException:
            self._dispose()
            raise

    def _make_engine(self, mode: str, begin_sql: str, poolclass: Any, **pool: Any) -> sa.Engine:
        uri = f"file:{urllib.parse.quote(os.path.abspath(self.filename))}?mode={mode}"
        timeout = self._busy_timeout

        def connect() -> sqlite3.Connection:
            # isolation_level=None: the driver never opens a transaction behind our back; the
            # "begin" listener below emits the BEGIN we want.
            return sqlite3.connect(
                uri, uri=True, timeout=timeout, isolation_level=None, check_same_thread=False
            )

        engine = sa.create_engine(
            "sqlite+pysqlite://", creator=connect, poolclass=poolclass, **pool
        )
        writer = mode != "ro"
        synchronous = "FULL" if self.sync else "NORMAL"
        busy_ms = int(timeout * 1000)

        @event.listens_for(engine, "connect")
        def on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            try:
                cur.execute(f"PRAGMA busy_timeout = {busy_ms}")
                if writer:
                    # Persistent in the file; readers and later opens inherit it.
                    mode_now = cur.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                    if str(mode_now).lower() != "wal":
                        raise errors.ConfigurationError(
                            f"{self.filename}: SQLite refused WAL mode (got {mode_now!r}); the "
                            "filesystem may lack shared-memory support"
                        )
                else:
                    cur.execute("PRAGMA query_only = ON")
                # Per connection: also matters for a reader, which may be the last connection to
                # close and so run the final checkpoint.
                cur.execute(f"PRAGMA synchronous = {synchronous}")
                if writer:
                    self.pragmas = {
                        "journal_mode": cur.execute("PRAGMA journal_mode").fetchone()[0],
                        "synchronous": cur.execute("PRAGMA synchronous").fetchone()[0],
                        "busy_timeout": cur.execute("PRAGMA busy_timeout").fetchone()[0],
                    }
            finally:
                cur.close()

        @event.listens_for(engine, "begin")
        def on_begin(conn: Connection) -> None:
            conn.exec_driver_sql(begin_sql)

        return engine

    def _init_schema(self, conn: Connection, create: bool) -> None:
        with conn.begin():  # BEGIN IMMEDIATE: two processes creating the store take turns
            present = {
                row[0]
                for row in conn.exec_driver_sql(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"
                )
            }
            if "kv_meta" in present:
                return
            if not create:
                raise errors.StoreNotFoundError(f"{self.filename} holds no store")
            if "kv" in present:
                raise errors.IncompatibleStoreError(
                    f"{self.filename} has a kv table but no kv_meta: not a store of this engine"
                )
            _schema.create_all(conn)
            _write_metadata(conn, metadata_record(self.provider))

    def _load_metadata(self) -> dict[str, Any]:
        with self._reader_engine.connect() as conn:
            present = conn.exec_driver_sql(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'kv_meta'"
            ).scalar()
            if not present:
                raise errors.StoreNotFoundError(f"{self.filename} holds no store")
            meta = _read_metadata(conn, self.filename)
            conn.rollback()
        check_metadata(meta, self.provider, self.filename)
        return meta

    # -- Store -----------------------------------------------------------------------------------
    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self._metadata)

    def begin(self, write: bool = False) -> Transaction:
        if self._closed:
            raise errors.StoreClosedError(f"the sqlite store at {self.path} is closed")
        if write:
            return self._begin_write()
        with _driver_errors():
            conn = self._reader_engine.connect()
            try:
                conn.begin()
                conn.execute(_PIN_SNAPSHOT)
            except BaseException:
                conn.close()
                raise
        return _ConnTransaction(conn, _no_release)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._writer_conn is not None:
                with _driver_errors():
                    self._drain_writers()
        finally:
            self._dispose()

    def _dispose(self) -> None:
        # Readers go first so that the writer's read-write connection is the last one to close:
        # only it may checkpoint the WAL into the database file and remove it.
        self._reader_engine.dispose()
        if self._writer_conn is not None:
            try:
                self._writer_conn.close()
            except Exception:
                pass
            self._writer_conn = None
        if self._writer_engine is not None:
            self._writer_engine.dispose()

    def stats(self) -> dict[str, Any]:
        out = super().stats()
        with self.begin() as txn:
            assert isinstance(txn, _ConnTransaction)
            out["keys"] = txn._execute(sa.select(sa.func.count()).select_from(kv)).scalar()
        size = 0
        for suffix in ("", "-wal"):
            try:
                size += os.path.getsize(self.filename + suffix)
            except OSError:
                pass
        out["bytes"] = size
        out["path"] = self.filename
        out.update(self.pragmas)
        return out

    # -- BatchingStore hooks (called under the writer mutex) --------------------------------------
    def _check_writable(self) -> None:
        if self._closed:
            raise errors.StoreClosedError(f"the sqlite store at {self.path} is closed")
        if self.readonly:
            raise errors.ReadOnlyError(f"the sqlite store at {self.path} was opened read-only")

    def _writer(self) -> Connection:
        assert self._writer_conn is not None
        return self._writer_conn

    @staticmethod
    def _require_transaction(conn: Connection) -> None:
        # SQLite rolls a transaction back by itself after some errors (SQLITE_FULL, IOERR, ...).
        # Statements after that would run in autocommit mode, each one durable on its own, and
        # break every member's atomicity: refuse instead, so that the batch is rebuilt or failed.
        dbapi = conn.connection.dbapi_connection
        if dbapi is None or not dbapi.in_transaction:
            raise errors.EngineError("sqlite ended the batch's transaction after an error")

    def _batch_open(self) -> Connection:
        conn = self._writer()
        with _driver_errors():
            try:
                conn.begin()
            except BaseException:
                conn.rollback()  # leave the connection without a half-begun transaction
                raise
        return conn

    def _batch_get(self, handle: Connection, key: bytes) -> bytes | None:
        with _driver_errors():
            self._require_transaction(handle)
            row = handle.execute(_GET, {"k": key}).first()
        return None if row is None else bytes(row[0])

    def _batch_scan(
        self, handle: Connection, lo: bytes, hi: bytes | None, reverse: bool
    ) -> Iterator[tuple[bytes, bytes]]:
        def execute(stmt: Any) -> Any:
            with _driver_errors():
                self._require_transaction(handle)
                return handle.execute(stmt)

        return _scan_pages(execute, lo, hi, reverse, None)

    def _full_disk(self, exc: errors.EngineError) -> errors.EngineError:
        """SQLite reports EFBIG (the file-size limit) as SQLITE_IOERR_WRITE, not SQLITE_FULL:
        a write error where the disk or the limit is exhausted is a full store."""
        orig = exc.__cause__
        if isinstance(orig, sa_exc.DBAPIError):
            orig = orig.orig
        code = getattr(orig, "sqlite_errorcode", None)
        if code is None or code & 0xFF != _SQLITE_IOERR or code in (
            _SQLITE_IOERR_FSYNC, _SQLITE_IOERR_DIR_FSYNC
        ):
            return exc
        reason = out_of_space(self.path, (self.filename, self.filename + "-wal"))
        if reason is None:
            return exc
        full = errors.StoreFullError(f"{exc}: {reason}")
        full.__cause__ = exc.__cause__
        return full

    def _batch_apply(self, handle: Connection, writes: dict[bytes, bytes | None]) -> None:
        puts = [{"key": k, "value": v} for k, v in writes.items() if v is not None]
        deletes = [{"k": k} for k, v in writes.items() if v is None]
        try:
            with _driver_errors():
                self._require_transaction(handle)
                if puts:
                    handle.execute(_SQLITE_UPSERT, puts)
                if deletes:
                    handle.execute(_DELETE, deletes)
        except errors.EngineError as exc:
            raise self._full_disk(exc) from exc.__cause__

    def _batch_commit(self, handle: Connection) -> None:
        try:
            with _driver_errors():
                self._require_transaction(handle)
                handle.commit()
        except errors.EngineError as exc:
            raise self._full_disk(exc) from exc.__cause__

    def _batch_abort(self, handle: Connection) -> None:
        with _driver_errors():
            handle.rollback()


# -- PostgreSQL -----------------------------------------------------------------------------------


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
            with _driver_errors():
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
                        _schema.create_all(conn)
                        _write_metadata(conn, metadata_record(self.provider))
                meta = _read_metadata(conn, self._where)
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
        with _driver_errors():
            conn = self._engine.connect().execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
            try:
                conn.begin()
                # REPEATABLE READ takes its snapshot at the first statement: take it now, so that
                # the transaction sees the store as of begin() as on the other backends.
                conn.execute(_PIN_SNAPSHOT)
            except BaseException:
                conn.close()
                raise
        return _ConnTransaction(conn, _no_release)

    def _begin_write(self) -> Transaction:
        if self.readonly:
            raise errors.ReadOnlyError(f"the postgresql store {self._where} was opened read-only")
        if getattr(self._local, "writing", False):
            # The second transaction would wait for the advisory lock that the first one holds.
            raise errors.EngineError("a write transaction is already open in this thread")
        with _driver_errors():
            conn = self._engine.connect().execution_options(isolation_level="READ COMMITTED")
            try:
                conn.begin()
                conn.execute(_PG_LOCK, {"lock": ADVISORY_LOCK_KEY})
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

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
power loss; ``sync=False`` gives NORMAL (durable against a process crash only).

SQLAlchemy Core is the source of every SQLite statement and creates the schema, but the hot paths
run those statements, compiled once with the sqlite dialect, on the DBAPI (``sqlite3``)
connections: SQLAlchemy's per-statement machinery cost ten times what SQLite itself spends on a
point read. The driver's own implicit BEGIN is disabled (``isolation_level=None``), so the kind of
BEGIN is ours to choose (at open, SQLAlchemy's ``begin`` event emits it for the schema work, as
SQLAlchemy's pysqlite documentation describes). Writes run on the writer's DBAPI connection.

Readers are separate read-only connections (``mode=ro``, ``query_only``), kept idle between
transactions in a free list of at most ``idle_readers`` (no lock: ``list.append`` and
``list.pop`` are atomic); a connection that met a driver error is closed, not reused, and
``close()`` closes every idle reader before the writer, so that the read-write connection closes
last and checkpoints the WAL away. A read transaction emits ``BEGIN`` (deferred) with its first
read, and that read pins one WAL snapshot for the transaction's life: the transaction sees
neither uncommitted nor later-committed writes, and never blocks or waits for the writer. One that
never reads never begins.

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
    MAX_KEY_SIZE,
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


def _page_statement(lower_inclusive: bool, bounded: bool, reverse: bool) -> sa.Select[Any]:
    """One page of a scan: keys after ``lower`` (and before ``upper``), at most ``size`` of them."""
    lower = sa.bindparam("lower", type_=sa.LargeBinary)
    conditions = [kv.c.key >= lower if lower_inclusive else kv.c.key > lower]
    if bounded:
        conditions.append(kv.c.key < sa.bindparam("upper", type_=sa.LargeBinary))
    return (
        sa.select(kv.c.key, kv.c.value)
        .where(*conditions)
        .order_by(kv.c.key.desc() if reverse else kv.c.key.asc())
        .limit(sa.bindparam("size", type_=sa.Integer))
    )


#: The page statements of a scan, by (lower bound inclusive, upper bound present, reverse).
_PAGES = {
    (inclusive, bounded, reverse): _page_statement(inclusive, bounded, reverse)
    for inclusive in (True, False)
    for bounded in (True, False)
    for reverse in (False, True)
}

#: fetch(lower, lower_inclusive, upper, reverse, size) -> the rows (key, value) of one page.
_PageFetcher = Callable[[bytes, bool, "bytes | None", bool, int], Any]


def _page_params(lower: bytes, upper: bytes | None, size: int) -> dict[str, Any]:
    params: dict[str, Any] = {"lower": lower, "size": size}
    if upper is not None:
        params["upper"] = upper
    return params


def _scan_pages(
    fetch: _PageFetcher,
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
        rows = fetch(lower, lower_inclusive, upper, reverse, size)
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


def _read_metadata(rows: Any, where: str) -> dict[str, Any]:
    """The store's metadata from the rows (name, JSON value) of ``_READ_META``."""
    meta: dict[str, Any] = {}
    for name, raw in rows:
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
    """A transaction whose statements run directly on one SQLAlchemy connection: PostgreSQL's
    read and write transactions."""

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
        return _scan_pages(self._page, lo, hi, reverse, limit)

    def _page(
        self, lower: bytes, inclusive: bool, upper: bytes | None, reverse: bool, size: int
    ) -> Any:
        stmt = _PAGES[inclusive, upper is not None, reverse]
        return self._execute(stmt, _page_params(lower, upper, size)).all()

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

_SQLITE_DIALECT = sqlite_dialect.dialect()


class _SqliteSql:
    """A Core statement compiled once for pysqlite (qmark parameters), run on DBAPI connections.

    ``params`` names the parameters the caller supplies; constants that the compiler bound itself
    (such as the ``OFFSET 0`` it adds after a LIMIT) are folded in by :meth:`args`.
    """

    __slots__ = ("sql", "order", "constants")

    def __init__(self, stmt: Any, *params: str) -> None:
        compiled = stmt.compile(dialect=_SQLITE_DIALECT)
        self.sql = str(compiled)
        self.order: tuple[str, ...] = tuple(compiled.positiontup or ())
        self.constants = {
            name: compiled.binds[name].effective_value for name in self.order if name not in params
        }
        if set(self.order) - set(self.constants) != set(params):
            raise AssertionError(f"{self.sql!r} takes {self.order}, not {params}")

    def args(self, values: dict[str, Any]) -> tuple[Any, ...]:
        """The positional parameters for ``values`` (by name) and the compiled constants."""
        constants = self.constants
        return tuple(constants[n] if n in constants else values[n] for n in self.order)


def _sqlite_positional(stmt: Any, *params: str) -> str:
    """The SQL of ``stmt``, whose positional parameters are exactly ``params`` in this order."""
    compiled = _SqliteSql(stmt, *params)
    if compiled.constants or compiled.order != params:
        raise AssertionError(f"{compiled.sql!r} takes {compiled.order}, not {params}")
    return compiled.sql


_SQLITE_GET = _sqlite_positional(_GET, "k")
_SQLITE_UPSERT_SQL = _sqlite_positional(_SQLITE_UPSERT, "key", "value")
_SQLITE_DELETE = _sqlite_positional(_DELETE, "k")
_SQLITE_READ_META = _sqlite_positional(_READ_META)
_SQLITE_COUNT = _sqlite_positional(sa.select(sa.func.count()).select_from(kv))
_SQLITE_HAS_META = "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'kv_meta'"
_SQLITE_PAGES = {
    shape: _SqliteSql(stmt, "lower", "upper", "size")
    if shape[1]
    else _SqliteSql(stmt, "lower", "size")
    for shape, stmt in _PAGES.items()
}


def _sqlite_page(
    run: Callable[[str, tuple[Any, ...]], Any],
    lower: bytes,
    inclusive: bool,
    upper: bytes | None,
    reverse: bool,
    size: int,
) -> Any:
    stmt = _SQLITE_PAGES[inclusive, upper is not None, reverse]
    return run(stmt.sql, stmt.args(_page_params(lower, upper, size)))


def _close_quietly(conn: sqlite3.Connection) -> None:
    try:
        conn.close()
    except Exception:
        pass


class _SqliteReadTransaction(Transaction):
    """A read transaction on one of the store's read-only DBAPI connections (see the module
    docstring): ``BEGIN`` comes with the first read, whose snapshot then holds until the end.

    Every statement runs on one cursor of the connection, reused: each result is fetched whole
    (a scan fetches page by page) before the next statement runs. A point read is this class's
    hot path: it costs three ``execute`` calls (BEGIN, SELECT, COMMIT) like raw sqlite3, plus as
    few Python calls as it can.
    """

    __slots__ = ("_store", "_cur", "_begun", "_broken", "_closed")

    def __init__(self, store: SqliteStore, cur: sqlite3.Cursor) -> None:
        self._store = store
        self._cur = cur
        self._closed = False
        self._begun = False
        #: A driver error hit the connection: it is closed at the end, not reused.
        self._broken = False

    def _failed(self, exc: sqlite3.Error) -> errors.EngineError:
        self._broken = True
        return _translate(exc)

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        if self._closed:
            raise errors.TransactionClosedError("the transaction is already closed")
        cur = self._cur
        try:
            if not self._begun:
                cur.execute("BEGIN")
                self._begun = True
            return cur.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self._failed(exc) from exc

    def get(self, key: bytes) -> bytes | None:
        if self._closed:
            raise errors.TransactionClosedError("the transaction is already closed")
        if type(key) is not bytes or len(key) > MAX_KEY_SIZE:
            key = check_key(key)
        cur = self._cur
        try:
            if not self._begun:
                cur.execute("BEGIN")
                self._begun = True
            row = cur.execute(_SQLITE_GET, (key,)).fetchone()
        except sqlite3.Error as exc:
            raise self._failed(exc) from exc
        return None if row is None else row[0]

    def scan(
        self,
        start: bytes | None = None,
        end: bytes | None = None,
        *,
        prefix: bytes | None = None,
        reverse: bool = False,
        limit: int | None = None,
    ) -> Iterator[tuple[bytes, bytes]]:
        if self._closed:
            raise errors.TransactionClosedError("the transaction is already closed")
        check_limit(limit)
        lo, hi = scan_bounds(start, end, prefix)
        if hi is not None and hi <= lo:
            return iter(())
        return _scan_pages(self._page, lo, hi, reverse, limit)

    def _page(
        self, lower: bytes, inclusive: bool, upper: bytes | None, reverse: bool, size: int
    ) -> Any:
        return _sqlite_page(self._query, lower, inclusive, upper, reverse, size)

    def commit(self) -> None:
        if self._closed:
            raise errors.TransactionClosedError("the transaction is already closed")
        self._end("COMMIT")

    def abort(self) -> None:
        if not self._closed:
            self._end("ROLLBACK")

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        # The base class's dispatch to commit() / abort(), inlined.
        if not self._closed:
            self._end("COMMIT" if exc_type is None else "ROLLBACK")

    def _end(self, sql: str) -> None:
        """Close the transaction: end the snapshot (if one was taken), then give the connection
        back to the store's idle readers, or close it if it failed, the store is closed, or
        enough readers are idle already. Only a failed COMMIT raises: ROLLBACK ends a snapshot
        that nothing was written in, and an error there changes nothing."""
        self._closed = True
        cur = self._cur
        error = None
        if self._begun and not self._broken:
            try:
                cur.execute(sql)
            except sqlite3.Error as exc:
                self._broken = True
                error = exc
        store = self._store
        if self._broken or store._closed:
            _close_quietly(cur.connection)
        else:
            idle = store._idle
            idle.append(cur)
            if len(idle) > store._idle_max or store._closed:
                # Another thread went over the bound at the same time, or close() emptied the
                # list between our check and the append: close what is too much.
                store._close_idle(0 if store._closed else store._idle_max)
        if error is not None and sql == "COMMIT":
            raise _translate(error) from error


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
        #: Idle reader connections, as one reusable cursor each. list.append and list.pop are
        #: atomic: checking a reader out and in takes no lock.
        self._idle: list[sqlite3.Cursor] = []
        self._idle_max = max(0, idle_readers)
        self._writer_engine: sa.Engine | None = None
        #: The writer's SQLAlchemy connection (schema creation at open) and its DBAPI connection,
        #: on which every write runs.
        self._writer_sa: Connection | None = None
        self._writer_conn: sqlite3.Connection | None = None
        #: Pragmas as read back from the writer connection when it was opened.
        self.pragmas: dict[str, Any] = {}
        if not os.path.exists(self.filename):
            if readonly or not create:
                raise errors.StoreNotFoundError(f"no sqlite store at {self.filename}")
            os.makedirs(path, exist_ok=True)
        try:
            with _driver_errors():
                if not readonly:
                    self._writer_engine = self._make_writer_engine("rwc" if create else "rw")
                    self._writer_sa = self._writer_engine.connect()
                    self._init_schema(self._writer_sa, create)
                    dbapi = self._writer_sa.connection.dbapi_connection
                    assert isinstance(dbapi, sqlite3.Connection)
                    self._writer_conn = dbapi
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

    # -- connections -----------------------------------------------------------------------------
    def _connect(self, mode: str) -> sqlite3.Connection:
        uri = f"file:{urllib.parse.quote(os.path.abspath(self.filename))}?mode={mode}"
        # isolation_level=None: the driver never opens a transaction behind our back; we emit
        # the BEGIN we want (deferred for readers, IMMEDIATE for the writer).
        return sqlite3.connect(
            uri, uri=True, timeout=self._busy_timeout, isolation_level=None,
            check_same_thread=False,
        )

    def _configure(self, conn: sqlite3.Connection, writer: bool) -> None:
        conn.isolation_level = None
        cur = conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
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
            cur.execute(f"PRAGMA synchronous = {'FULL' if self.sync else 'NORMAL'}")
            if writer:
                self.pragmas = {
                    "journal_mode": cur.execute("PRAGMA journal_mode").fetchone()[0],
                    "synchronous": cur.execute("PRAGMA synchronous").fetchone()[0],
                    "busy_timeout": cur.execute("PRAGMA busy_timeout").fetchone()[0],
                }
        finally:
            cur.close()

    def _make_writer_engine(self, mode: str) -> sa.Engine:
        """The engine of the one read-write connection: schema creation at open goes through it,
        and every write afterwards runs on its DBAPI connection."""
        engine = sa.create_engine(
            "sqlite+pysqlite://", creator=lambda: self._connect(mode), poolclass=sa.pool.NullPool
        )

        @event.listens_for(engine, "connect")
        def on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
            self._configure(dbapi_conn, writer=True)

        @event.listens_for(engine, "begin")
        def on_begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine

    def _open_reader(self) -> sqlite3.Cursor:
        # Readers open the file read-only whatever the store's mode: they must never write, and
        # a read-only open cannot create an empty database by accident.
        try:
            conn = self._connect("ro")
            try:
                self._configure(conn, writer=False)
                return conn.cursor()
            except BaseException:
                conn.close()
                raise
        except sqlite3.Error as exc:
            raise _translate(exc) from exc

    def _close_idle(self, keep: int = 0) -> None:
        idle = self._idle
        while len(idle) > keep:
            try:
                cur = idle.pop()
            except IndexError:
                return
            _close_quietly(cur.connection)

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
        txn = self._begin_read()
        with txn:
            if not txn._query(_SQLITE_HAS_META)[0][0]:
                raise errors.StoreNotFoundError(f"{self.filename} holds no store")
            meta = _read_metadata(txn._query(_SQLITE_READ_META), self.filename)
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
        try:
            cur = self._idle.pop()
        except IndexError:
            cur = self._open_reader()
        return _SqliteReadTransaction(self, cur)

    def _begin_read(self) -> _SqliteReadTransaction:
        """A read transaction; begin() does the same inline (the point read's hot path)."""
        if self._closed:
            raise errors.StoreClosedError(f"the sqlite store at {self.path} is closed")
        try:
            cur = self._idle.pop()
        except IndexError:
            cur = self._open_reader()
        return _SqliteReadTransaction(self, cur)

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
        # only it may checkpoint the WAL into the database file and remove it. (A reader still
        # in a transaction closes its connection when that transaction ends.)
        self._close_idle()
        self._writer_conn = None
        if self._writer_sa is not None:
            try:
                self._writer_sa.close()
            except Exception:
                pass
            self._writer_sa = None
        if self._writer_engine is not None:
            self._writer_engine.dispose()

    def stats(self) -> dict[str, Any]:
        out = super().stats()
        txn = self._begin_read()
        with txn:
            out["keys"] = txn._query(_SQLITE_COUNT)[0][0]
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

    @staticmethod
    def _require_transaction(conn: sqlite3.Connection) -> None:
        # SQLite rolls a transaction back by itself after some errors (SQLITE_FULL, IOERR, ...).
        # Statements after that would run in autocommit mode, each one durable on its own, and
        # break every member's atomicity: refuse instead, so that the batch is rebuilt or failed.
        if not conn.in_transaction:
            raise errors.EngineError("sqlite ended the batch's transaction after an error")

    def _batch_open(self) -> sqlite3.Connection:
        conn = self._writer_conn
        assert conn is not None
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            if conn.in_transaction:  # leave the connection without a half-begun transaction
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise _translate(exc) from exc
        return conn

    def _batch_get(self, handle: sqlite3.Connection, key: bytes) -> bytes | None:
        self._require_transaction(handle)
        try:
            row = handle.execute(_SQLITE_GET, (key,)).fetchone()
        except sqlite3.Error as exc:
            raise _translate(exc) from exc
        return None if row is None else row[0]

    def _batch_scan(
        self, handle: sqlite3.Connection, lo: bytes, hi: bytes | None, reverse: bool
    ) -> Iterator[tuple[bytes, bytes]]:
        def run(sql: str, params: tuple[Any, ...]) -> list[Any]:
            self._require_transaction(handle)
            try:
                return handle.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise _translate(exc) from exc

        def page(
            lower: bytes, inclusive: bool, upper: bytes | None, reverse: bool, size: int
        ) -> Any:
            return _sqlite_page(run, lower, inclusive, upper, reverse, size)

        return _scan_pages(page, lo, hi, reverse, None)

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

    def _write_error(self, exc: sqlite3.Error) -> errors.EngineError:
        translated = _translate(exc)
        translated.__cause__ = exc
        return self._full_disk(translated)

    def _batch_apply(self, handle: sqlite3.Connection, writes: dict[bytes, bytes | None]) -> None:
        self._require_transaction(handle)
        try:
            if None not in writes.values():  # puts only, the common case: no lists to build
                handle.executemany(_SQLITE_UPSERT_SQL, writes.items())
                return
            puts = [(k, v) for k, v in writes.items() if v is not None]
            deletes = [(k,) for k, v in writes.items() if v is None]
            if puts:
                handle.executemany(_SQLITE_UPSERT_SQL, puts)
            handle.executemany(_SQLITE_DELETE, deletes)
        except sqlite3.Error as exc:
            raise self._write_error(exc) from exc

    def _batch_commit(self, handle: sqlite3.Connection) -> None:
        self._require_transaction(handle)
        try:
            handle.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._write_error(exc) from exc

    def _batch_abort(self, handle: sqlite3.Connection) -> None:
        if handle.in_transaction:
            try:
                handle.execute("ROLLBACK")
            except sqlite3.Error as exc:
                raise _translate(exc) from exc


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
                meta = _read_metadata(conn.execute(_READ_META), self._where)
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

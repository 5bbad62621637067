"""SQLite (``SqliteStore``): ``<path>/store.sqlite3`` in WAL mode.

Writes go through the engine's group commit (:class:`engine.batching.BatchingStore`) on one
dedicated writer connection: a batch is one ``BEGIN IMMEDIATE`` ... ``COMMIT``, so the database's
write lock is taken when the batch opens (not at the first write, which would let two processes'
deferred transactions deadlock on lock upgrade) and one fsync of the WAL carries every member of the
batch. ``synchronous=FULL`` (the default, ``sync=True``) syncs the WAL at each commit, which is what
makes a WAL commit survive power loss; ``sync=False`` gives NORMAL (durable against a process crash
only).

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
"""

from __future__ import annotations

import os
import sqlite3
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection

from engine import errors
from engine.backends.common import (
    backup_directory,
    check_metadata,
    create_directories,
    metadata_record,
    out_of_space,
    unwritable,
)
from engine.backends.sql.common import (
    DELETE,
    GET,
    PAGE_STATEMENTS,
    READ_META,
    SQLITE_IOERR,
    SQLITE_IOERR_DIR_FSYNC,
    SQLITE_IOERR_FSYNC,
    driver_errors,
    kv,
    page_params,
    read_metadata,
    scan_pages,
    schema,
    translate,
    write_metadata,
)
from engine.batching import BatchingStore
from engine.interface import MAX_KEY_SIZE, Transaction, check_key

SQLITE_FILENAME = "store.sqlite3"

_sqlite_insert = sqlite_dialect.insert(kv)
_SQLITE_UPSERT = _sqlite_insert.on_conflict_do_update(
    index_elements=[kv.c.key], set_={"value": _sqlite_insert.excluded.value}
)

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


_SQLITE_GET = _sqlite_positional(GET, "k")
_SQLITE_UPSERT_SQL = _sqlite_positional(_SQLITE_UPSERT, "key", "value")
_SQLITE_DELETE = _sqlite_positional(DELETE, "k")
_SQLITE_READ_META = _sqlite_positional(READ_META)
_SQLITE_COUNT = _sqlite_positional(sa.select(sa.func.count()).select_from(kv))
_SQLITE_HAS_META = "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'kv_meta'"
_SQLITE_PAGES = {
    shape: _SqliteSql(stmt, "lower", "upper", "size")
    if shape[1]
    else _SqliteSql(stmt, "lower", "size")
    for shape, stmt in PAGE_STATEMENTS.items()
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
    return run(stmt.sql, stmt.args(page_params(lower, upper, size)))


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
        return translate(exc)

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

    def _scan(
        self, lo: bytes, hi: bytes | None, reverse: bool, limit: int | None
    ) -> Iterator[tuple[bytes, bytes]]:
        return scan_pages(self._page, lo, hi, reverse, limit)

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
            raise translate(error) from error


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
            create_directories(path)  # SQLite syncs the store's directory, not its parents
        try:
            with driver_errors():
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
            raise translate(exc) from exc

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
            schema.create_all(conn)
            write_metadata(conn, metadata_record(self.provider))

    def _load_metadata(self) -> dict[str, Any]:
        txn = self._begin_read()
        with txn:
            if not txn._query(_SQLITE_HAS_META)[0][0]:
                raise errors.StoreNotFoundError(f"{self.filename} holds no store")
            meta = read_metadata(txn._query(_SQLITE_READ_META), self.filename)
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
                with driver_errors():
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

    def backup(self, directory: str, *, compact: bool = True) -> None:
        # SQLite's online backup API, from a connection of its own: a consistent copy while the
        # store's writer goes on (pages=-1 copies in one step, under one read snapshot).
        if self._closed:
            raise errors.StoreClosedError(f"the store at {self.path} is closed")
        target = os.path.join(backup_directory(directory), SQLITE_FILENAME)
        src = self._connect("ro")
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode = WAL")
        except sqlite3.Error as exc:
            raise errors.EngineError(f"sqlite backup to {target} failed: {exc}") from exc
        finally:
            dst.close()
            src.close()

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
            raise translate(exc) from exc
        return conn

    def _batch_get(self, handle: sqlite3.Connection, key: bytes) -> bytes | None:
        self._require_transaction(handle)
        try:
            row = handle.execute(_SQLITE_GET, (key,)).fetchone()
        except sqlite3.Error as exc:
            raise translate(exc) from exc
        return None if row is None else row[0]

    def _batch_scan(
        self, handle: sqlite3.Connection, lo: bytes, hi: bytes | None, reverse: bool
    ) -> Iterator[tuple[bytes, bytes]]:
        def run(sql: str, params: tuple[Any, ...]) -> list[Any]:
            self._require_transaction(handle)
            try:
                return handle.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise translate(exc) from exc

        def page(
            lower: bytes, inclusive: bool, upper: bytes | None, reverse: bool, size: int
        ) -> Any:
            return _sqlite_page(run, lower, inclusive, upper, reverse, size)

        return scan_pages(page, lo, hi, reverse, None)

    def _full_disk(self, exc: errors.EngineError) -> errors.EngineError:
        """SQLite reports EFBIG (the file-size limit) as SQLITE_IOERR_WRITE, not SQLITE_FULL:
        a write error where the disk or the limit is exhausted is a full store."""
        orig = exc.__cause__
        if isinstance(orig, sa_exc.DBAPIError):
            orig = orig.orig
        code = getattr(orig, "sqlite_errorcode", None)
        if code is None or code & 0xFF != SQLITE_IOERR or code in (
            SQLITE_IOERR_FSYNC, SQLITE_IOERR_DIR_FSYNC
        ):
            return exc
        reason = out_of_space(self.path, (self.filename, self.filename + "-wal"))
        if reason is None:
            return exc
        full = errors.StoreFullError(f"{exc}: {reason}")
        full.__cause__ = exc.__cause__
        return full

    def _write_error(self, exc: sqlite3.Error) -> errors.EngineError:
        translated = translate(exc)
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
                raise translate(exc) from exc



"""What the SQL backends promise beyond the shared contract (tests/engine/test_contract.py).

SQLite: the durable pragmas are in effect on the connection that commits, writes take the database's
write lock at BEGIN (BEGIN IMMEDIATE), read-only opens refuse writes, a store of another backend is
refused, and driver errors leave as engine errors. Reader connections are reused and bounded, one
that met an error is dropped, close() closes them before the writer, a read transaction that never
reads holds no snapshot, and many concurrent readers each see whole commits. PostgreSQL: several
*processes* sharing one database neither lose an update nor let two claims of one key both win
(threads of one process writing in parallel: tests/engine/test_postgres_writers.py).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3
import threading
import time
from typing import Any

import pytest
import sqlalchemy as sa

from engine import errors, open_store
from engine.backends.sql.common import translate
from engine.backends.sql.postgresql import PostgresStore
from engine.backends.sql.sqlite import SQLITE_FILENAME, SqliteStore
from engine.indexes import transact

# -- SQLite ---------------------------------------------------------------------------------------


def _sqlite_file(loc: dict[str, Any]) -> str:
    return os.path.join(loc["data_dir"], "sqlite", SQLITE_FILENAME)


def _writer_pragma(store: SqliteStore, name: str) -> Any:
    # Inside a write transaction this thread owns the writer connection.
    with store.begin(write=True):
        assert store._writer_conn is not None
        return store._writer_conn.execute(f"PRAGMA {name}").fetchone()[0]


def test_sqlite_durable_pragmas_are_in_effect(make_store: Any) -> None:
    loc = make_store.location("sqlite")
    store = make_store.open("sqlite", loc)
    assert isinstance(store, SqliteStore)
    assert _writer_pragma(store, "journal_mode") == "wal"
    assert _writer_pragma(store, "synchronous") == 2  # FULL: the WAL is synced at every commit
    assert _writer_pragma(store, "busy_timeout") > 0
    stats = store.stats()
    assert (stats["journal_mode"], stats["synchronous"]) == ("wal", 2)
    # WAL is a property of the file: any other connection sees it too.
    raw = sqlite3.connect(_sqlite_file(loc))
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        raw.close()
    # Read transactions run on connections that cannot write.
    with store.begin() as txn:
        assert txn._cur.execute("PRAGMA query_only").fetchone()[0] == 1  # type: ignore[attr-defined]
    store.close()

    relaxed = make_store.open("sqlite", loc, sync=False)
    assert _writer_pragma(relaxed, "synchronous") == 1  # NORMAL


def test_sqlite_write_transaction_begins_immediate(make_store: Any) -> None:
    loc = make_store.location("sqlite")
    store = make_store.open("sqlite", loc)
    assert isinstance(store, SqliteStore) and store._writer_conn is not None
    statements: list[str] = []
    store._writer_conn.set_trace_callback(statements.append)

    other = sqlite3.connect(_sqlite_file(loc), timeout=0, isolation_level=None)
    try:
        with store.begin(write=True) as txn:
            # Nothing written yet, and still the write lock is ours: another connection's
            # BEGIN IMMEDIATE fails at once. A deferred BEGIN would not have taken it.
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
            txn.put(b"k", b"v")
        other.execute("BEGIN IMMEDIATE")  # released by the commit
        other.execute("ROLLBACK")
    finally:
        other.close()
    assert statements[0] == "BEGIN IMMEDIATE"
    assert statements[-1] == "COMMIT"
    assert any(s.startswith("INSERT INTO kv") for s in statements)


def test_sqlite_writer_blocked_by_another_process_gets_store_locked(make_store: Any) -> None:
    loc = make_store.location("sqlite")
    make_store.open("sqlite", loc).close()
    store = make_store.open("sqlite", loc, busy_timeout=0.2)
    holder = sqlite3.connect(_sqlite_file(loc), isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(errors.StoreLockedError):
            store.begin(write=True)
        holder.execute("ROLLBACK")
    finally:
        holder.close()
    with store.begin(write=True) as txn:  # the failed BEGIN left the writer usable
        txn.put(b"after", b"1")
    with store.begin() as txn:
        assert txn.get(b"after") == b"1"


def test_sqlite_readonly_open_refuses_writes_and_never_creates(make_store: Any) -> None:
    loc = make_store.location("sqlite")
    with pytest.raises(errors.StoreNotFoundError):
        make_store.open("sqlite", loc, readonly=True)
    assert not os.path.exists(_sqlite_file(loc))
    store = make_store.open("sqlite", loc)
    with store.begin(write=True) as txn:
        txn.put(b"a", b"1")
    reader = make_store.open("sqlite", loc, readonly=True)
    with pytest.raises(errors.ReadOnlyError):
        reader.begin(write=True)
    with reader.begin() as txn:
        assert txn.get(b"a") == b"1"
        with pytest.raises(errors.ReadOnlyError):
            txn.put(b"b", b"2")
    # A read-only store reads what the writer commits later (a new snapshot per transaction).
    with store.begin(write=True) as txn:
        txn.put(b"a", b"2")
    with reader.begin() as txn:
        assert txn.get(b"a") == b"2"


@pytest.mark.parametrize(
    ("field", "value"),
    [("backend", "lmdb"), ("format_version", 99), ("format", "something-else")],
)
def test_sqlite_store_with_foreign_metadata_is_refused(
    make_store: Any, field: str, value: Any
) -> None:
    loc = make_store.location("sqlite")
    make_store.open("sqlite", loc).close()
    raw = sqlite3.connect(_sqlite_file(loc))
    with raw:
        raw.execute("UPDATE kv_meta SET value = ? WHERE name = ?", (json.dumps(value), field))
    raw.close()
    with pytest.raises(errors.IncompatibleStoreError):
        open_store("sqlite", **loc)
    with pytest.raises(errors.IncompatibleStoreError):
        open_store("sqlite", **loc, readonly=True)


def test_sqlite_file_that_is_not_a_database_is_corrupt(make_store: Any) -> None:
    loc = make_store.location("sqlite")
    os.makedirs(os.path.dirname(_sqlite_file(loc)))
    with open(_sqlite_file(loc), "wb") as f:
        f.write(b"this is not a database, just some bytes" * 200)
    with pytest.raises(errors.CorruptStoreError):
        open_store("sqlite", **loc)


def test_sqlite_full_disk_fails_only_that_transaction(make_store: Any) -> None:
    store = make_store.open("sqlite")
    assert isinstance(store, SqliteStore) and store._writer_conn is not None
    with store.begin(write=True) as txn:
        txn.put(b"small", b"1")
    # The file may not grow any more: SQLite answers SQLITE_FULL, as on a full disk.
    pages = _writer_pragma(store, "page_count")
    with store.begin(write=True):
        store._writer_conn.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(errors.StoreFullError):
        with store.begin(write=True) as txn:
            txn.put(b"big", os.urandom(1 << 20))
    with store.begin(write=True) as txn:  # the writer recovers for writes that still fit
        txn.put(b"small", b"2")
    with store.begin() as txn:
        assert txn.get(b"big") is None
        assert txn.get(b"small") == b"2"


def test_sqlite_close_flushes_and_refuses(make_store: Any) -> None:
    loc = make_store.location("sqlite")
    store = make_store.open("sqlite", loc)
    with store.begin(write=True) as txn:
        txn.put(b"k", b"v")
    store.close()
    with pytest.raises(errors.StoreClosedError):
        store.begin()
    # The last connection closed was the read-write one, so the WAL went into the database file.
    assert not os.path.exists(_sqlite_file(loc) + "-wal")
    reopened = make_store.open("sqlite", loc, create=False)
    with reopened.begin() as txn:
        assert txn.get(b"k") == b"v"



def test_sqlite_batch_that_sqlite_ended_is_not_continued_in_autocommit(make_store: Any) -> None:
    store = make_store.open("sqlite")
    assert isinstance(store, SqliteStore) and store._writer_conn is not None
    with store.begin(write=True) as txn:
        txn.put(b"a", b"1")
    txn = store.begin(write=True)
    txn.put(b"a", b"2")
    txn.put(b"b", b"2")
    # What SQLite does by itself after some errors (SQLITE_FULL, IOERR, ...).
    store._writer_conn.execute("ROLLBACK")
    with pytest.raises(errors.EngineError, match="ended the batch"):
        txn.get(b"c")
    with pytest.raises(errors.EngineError, match="ended the batch"):
        txn.commit()  # rather than writing a and b one by one, each durable on its own
    with store.begin() as reader:
        assert list(reader.scan()) == [(b"a", b"1")]
    with store.begin(write=True) as txn:  # the next batch begins afresh
        txn.put(b"a", b"3")
    with store.begin() as reader:
        assert list(reader.scan()) == [(b"a", b"3")]

# -- SQLite readers -------------------------------------------------------------------------------


def _reader_conn(txn: Any) -> sqlite3.Connection:
    return txn._cur.connection  # type: ignore[no-any-return]


def _is_closed(conn: sqlite3.Connection) -> bool:
    try:
        conn.execute("SELECT 1")
    except sqlite3.ProgrammingError:
        return True
    return False


def test_sqlite_read_transactions_reuse_their_connections(
    make_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store.open("sqlite")
    assert isinstance(store, SqliteStore)
    with store.begin(write=True) as txn:
        txn.put(b"k", b"v")
    opened: list[str] = []
    connect = store._connect

    def counting_connect(mode: str) -> sqlite3.Connection:
        opened.append(mode)
        return connect(mode)

    monkeypatch.setattr(store, "_connect", counting_connect)
    seen = set()
    for _ in range(50):
        with store.begin() as txn:
            assert txn.get(b"k") == b"v"
            assert list(txn.scan()) == [(b"k", b"v")]
            seen.add(id(_reader_conn(txn)))
    assert len(opened) <= 1  # at most one new connection (none if the one used at open is idle)
    assert len(seen) == 1


def test_sqlite_idle_readers_are_bounded(make_store: Any) -> None:
    store = make_store.open("sqlite", idle_readers=2)
    assert isinstance(store, SqliteStore)
    with store.begin(write=True) as txn:
        txn.put(b"k", b"v")
    txns = [store.begin() for _ in range(5)]  # five at once: five connections
    conns = [_reader_conn(t) for t in txns]
    assert len({id(c) for c in conns}) == 5
    for t in txns:
        assert t.get(b"k") == b"v"
        t.commit()
    assert len(store._idle) == 2
    idle = {id(cur.connection) for cur in store._idle}
    for c in conns:
        assert _is_closed(c) is (id(c) not in idle)
    with store.begin() as txn:  # an idle one serves the next transaction
        assert id(_reader_conn(txn)) in idle


def test_sqlite_reader_that_met_a_driver_error_is_not_reused(make_store: Any) -> None:
    store = make_store.open("sqlite")
    assert isinstance(store, SqliteStore)
    with store.begin(write=True) as txn:
        txn.put(b"k", b"v")
    for end in ("commit", "abort"):
        txn = store.begin()
        conn = _reader_conn(txn)
        conn.set_progress_handler(lambda: 1, 1)  # SQLite interrupts every statement
        with pytest.raises(errors.EngineError) as raised:
            txn.get(b"k")
        assert isinstance(raised.value.__cause__, sqlite3.Error)  # translated, not leaked
        with pytest.raises(errors.EngineError):
            list(txn.scan())
        getattr(txn, end)()
        assert _is_closed(conn)
        assert all(cur.connection is not conn for cur in store._idle)
        with store.begin() as other:
            assert _reader_conn(other) is not conn
            assert other.get(b"k") == b"v"


def test_sqlite_read_transaction_that_never_reads_holds_no_snapshot(make_store: Any) -> None:
    loc = make_store.location("sqlite")
    store = make_store.open("sqlite", loc)
    with store.begin(write=True) as txn:
        txn.put(b"k", b"1")
    other = sqlite3.connect(_sqlite_file(loc), timeout=0, isolation_level=None)

    def checkpoint_blocked() -> bool:
        # A full checkpoint that resets the WAL must wait for every reader of a snapshot.
        busy, _log, _done = other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return bool(busy)

    try:
        idle = store.begin()
        statements: list[str] = []
        _reader_conn(idle).set_trace_callback(statements.append)
        with store.begin(write=True) as txn:
            txn.put(b"k", b"2")
        assert not _reader_conn(idle).in_transaction
        assert not checkpoint_blocked()
        idle.commit()
        assert statements == []  # neither BEGIN nor COMMIT
        assert all(not cur.connection.in_transaction for cur in store._idle)

        # The control: a transaction that has read holds its snapshot until it ends.
        reading = store.begin()
        assert reading.get(b"k") == b"2"
        with store.begin(write=True) as txn:
            txn.put(b"k", b"3")
        assert _reader_conn(reading).in_transaction
        assert checkpoint_blocked()
        assert reading.get(b"k") == b"2"
        reading.abort()
        assert not checkpoint_blocked()
        assert all(not cur.connection.in_transaction for cur in store._idle)
    finally:
        other.close()


def test_sqlite_close_closes_idle_readers_before_the_writer(make_store: Any) -> None:
    loc = make_store.location("sqlite")
    store = make_store.open("sqlite", loc)
    assert isinstance(store, SqliteStore)
    with store.begin(write=True) as txn:
        txn.put(b"k", b"v")
    txns = [store.begin() for _ in range(4)]
    for t in txns:
        assert t.get(b"k") == b"v"
    conns = [_reader_conn(t) for t in txns]
    for t in txns:
        t.commit()
    assert len(store._idle) >= 4
    store.close()
    assert store._idle == []
    assert all(_is_closed(c) for c in conns)
    # Only the last connection to close may checkpoint the WAL away: the writer was last.
    assert not os.path.exists(_sqlite_file(loc) + "-wal")


def test_sqlite_reader_that_outlives_close_closes_its_connection(make_store: Any) -> None:
    loc = make_store.location("sqlite")
    store = make_store.open("sqlite", loc)
    with store.begin(write=True) as txn:
        txn.put(b"k", b"v")
    for end in ("commit", "abort"):
        store = make_store.open("sqlite", loc)
        assert isinstance(store, SqliteStore)
        txn = store.begin()
        assert txn.get(b"k") == b"v"
        conn = _reader_conn(txn)
        store.close()
        assert not _is_closed(conn)  # still serving its transaction
        assert txn.get(b"k") == b"v"
        getattr(txn, end)()
        assert _is_closed(conn)
        assert store._idle == []


def test_sqlite_closed_read_transaction_stays_closed_while_its_connection_serves_another(
    make_store: Any,
) -> None:
    store = make_store.open("sqlite", idle_readers=1)
    with store.begin(write=True) as txn:
        for i in range(300):
            txn.put(b"k%03d" % i, b"old")
    txn = store.begin()
    pages = txn.scan()
    assert [next(pages)[0] for _ in range(40)] == [b"k%03d" % i for i in range(40)]
    conn = _reader_conn(txn)
    txn.commit()
    assert txn.closed
    txn.abort()  # a no-op once closed
    with pytest.raises(errors.TransactionClosedError):
        txn.commit()
    with store.begin(write=True) as w:
        w.put(b"k299", b"new")
    with store.begin() as other:
        assert _reader_conn(other) is conn  # the connection went on to the next transaction
        assert other.get(b"k299") == b"new"
        with pytest.raises(errors.TransactionClosedError):
            txn.get(b"k000")
        with pytest.raises(errors.TransactionClosedError):
            txn.scan()
        with pytest.raises(errors.TransactionClosedError):
            list(pages)  # the next page would have come from the other transaction's snapshot


def test_sqlite_concurrent_readers_see_whole_commits(make_store: Any) -> None:
    store = make_store.open("sqlite", sync=False, idle_readers=4)
    assert isinstance(store, SqliteStore)
    keys = [b"k%02d" % i for i in range(8)]
    with store.begin(write=True) as txn:
        for k in keys:
            txn.put(k, b"%06d" % 0)
    commits = 150
    writer_done = threading.Event()
    failures: list[str] = []

    def writer() -> None:
        try:
            for n in range(1, commits + 1):
                with store.begin(write=True) as txn:
                    for k in keys:
                        txn.put(k, b"%06d" % n)
        except Exception as exc:  # reported below
            failures.append(f"writer: {exc!r}")
        finally:
            writer_done.set()

    def reader(t: int) -> None:
        last = 0
        rounds = 0
        try:
            while not writer_done.is_set() or rounds < 5:
                rounds += 1
                with store.begin() as txn:
                    first = txn.get(keys[t % len(keys)])
                    scanned = list(txn.scan(prefix=b"k"))
                    backwards = list(txn.scan(prefix=b"k", reverse=True, limit=3))
                    again = txn.get(keys[(t + 3) % len(keys)])
                values = {first, again} | {v for _k, v in scanned} | {v for _k, v in backwards}
                if len(values) != 1 or [k for k, _v in scanned] != keys:
                    failures.append(f"reader {t}: torn snapshot {values}")
                    return
                seen = int(values.pop() or b"-1")
                if seen < last:
                    failures.append(f"reader {t}: went back from {last} to {seen}")
                    return
                last = seen
        except Exception as exc:  # reported below
            failures.append(f"reader {t}: {exc!r}")

    threads = [threading.Thread(target=reader, args=(t,)) for t in range(32)]
    threads.append(threading.Thread(target=writer))
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert not any(th.is_alive() for th in threads)
    assert not failures, failures[:5]
    assert len(store._idle) <= 4
    with store.begin() as txn:
        assert {v for _k, v in txn.scan()} == {b"%06d" % commits}


# -- error translation ----------------------------------------------------------------------------


def _sqlite_error(code: int, cls: type[sqlite3.Error] = sqlite3.OperationalError) -> sqlite3.Error:
    exc = cls("simulated")
    exc.sqlite_errorcode = code  # type: ignore[attr-defined]
    exc.sqlite_errorname = f"code {code}"  # type: ignore[attr-defined]
    return exc


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (13, errors.StoreFullError),  # SQLITE_FULL
        (5, errors.StoreLockedError),  # SQLITE_BUSY
        (5 | (2 << 8), errors.StoreLockedError),  # SQLITE_BUSY_SNAPSHOT
        (11, errors.CorruptStoreError),  # SQLITE_CORRUPT
        (26, errors.CorruptStoreError),  # SQLITE_NOTADB
        (10 | (4 << 8), errors.DurabilityError),  # SQLITE_IOERR_FSYNC
        (14, errors.BackendUnavailableError),  # SQLITE_CANTOPEN
        (1, errors.EngineError),  # SQLITE_ERROR
    ],
)
def test_sqlite_errors_are_translated(code: int, expected: type[Exception]) -> None:
    translated = translate(_sqlite_error(code))
    assert type(translated) is expected


@pytest.mark.parametrize(
    ("sqlstate", "expected"),
    [
        ("53100", errors.StoreFullError),
        ("40001", errors.WriteConflictError),
        ("40P01", errors.WriteConflictError),
        ("55P03", errors.StoreLockedError),
        ("57P01", errors.BackendUnavailableError),
        ("08006", errors.BackendUnavailableError),
        ("53300", errors.BackendUnavailableError),
        ("XX001", errors.CorruptStoreError),
        ("22012", errors.EngineError),
    ],
)
def test_postgres_errors_are_translated(sqlstate: str, expected: type[Exception]) -> None:
    import psycopg

    driver_error = psycopg.errors.lookup(sqlstate)("simulated")
    wrapped = sa.exc.DBAPIError("SELECT 1", {}, driver_error)
    assert type(translate(driver_error)) is expected
    assert type(translate(wrapped)) is expected


# -- PostgreSQL -----------------------------------------------------------------------------------


def _show(txn: Any, setting: str) -> str:
    return str(txn._conn.exec_driver_sql(f"SHOW {setting}").scalar())


def test_postgres_transaction_modes(make_store: Any) -> None:
    # pool_size=1, no overflow: every transaction below runs on the same server session, so a
    # read-only setting that leaked from a read transaction into a write one would show.
    store = make_store.open("postgresql", pool_size=1, max_overflow=0)
    assert isinstance(store, PostgresStore)
    for _ in range(2):
        with store.begin() as txn:
            assert _show(txn, "transaction_isolation") == "repeatable read"
            assert _show(txn, "transaction_read_only") == "on"
        with store.begin(write=True) as txn:
            assert _show(txn, "transaction_isolation") == "serializable"
            assert _show(txn, "transaction_read_only") == "off"
            held = txn._conn.exec_driver_sql(  # type: ignore[attr-defined]
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND pid = pg_backend_pid()"
            ).scalar()
            assert held == 0  # no lock of the whole database: writers run in parallel
            txn.put(b"k", b"v")


def test_postgres_failed_statement_makes_commit_fail(make_store: Any) -> None:
    store = make_store.open("postgresql")
    txn = store.begin(write=True)
    txn.put(b"a", b"1")
    with pytest.raises(errors.EngineError):
        txn._execute(sa.text("SELECT 1 / 0"))  # type: ignore[attr-defined]
    # PostgreSQL has aborted the transaction; COMMIT would quietly roll back. Say so instead.
    with pytest.raises(errors.EngineError):
        txn.commit()
    assert txn.closed
    with store.begin() as reader:
        assert reader.get(b"a") is None
    with store.begin(write=True) as txn:  # the connection went back to the pool clean
        txn.put(b"a", b"2")


def test_postgres_store_with_foreign_metadata_is_refused(make_store: Any) -> None:
    loc = make_store.location("postgresql")
    make_store.open("postgresql", loc).close()
    engine = sa.create_engine(loc["database_url"])
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE kv_meta SET value = '\"sqlite\"' WHERE name = 'backend'")
    engine.dispose()
    with pytest.raises(errors.IncompatibleStoreError):
        open_store("postgresql", **loc)


def test_postgres_readonly_refuses_writes(make_store: Any) -> None:
    loc = make_store.location("postgresql")
    with pytest.raises(errors.StoreNotFoundError):
        open_store("postgresql", **loc, readonly=True)
    writer = make_store.open("postgresql", loc)
    with writer.begin(write=True) as txn:
        txn.put(b"a", b"1")
    reader = make_store.open("postgresql", loc, readonly=True)
    with pytest.raises(errors.ReadOnlyError):
        reader.begin(write=True)
    with reader.begin() as txn:
        assert txn.get(b"a") == b"1"


def test_postgres_server_restart_is_unavailable_then_recovers(
    make_store: Any, pg_cluster: Any
) -> None:
    if not pg_cluster.managed:
        pytest.skip("needs a server started by the tests (AUTOBYTEUS_TEST_DATABASE_URL is set)")
    store = make_store.open("postgresql", connect_timeout=2)
    with store.begin(write=True) as txn:
        txn.put(b"k", b"v")
    pg_cluster.stop_server("fast")
    try:
        with pytest.raises(errors.BackendUnavailableError):
            store.begin()
    finally:
        pg_cluster.start_server()
    with store.begin() as txn:  # pooled connections died with the server; new ones are made
        assert txn.get(b"k") == b"v"


# Two processes: each runs the worker below in a process of its own, with its own PostgresStore.


def _process_worker(
    task: str, url: str, worker: int, ready: Any, go: Any, out: Any
) -> None:
    try:
        store = open_store("postgresql", database_url=url)
    except BaseException as exc:
        ready.put(worker)
        out.put({"worker": worker, "error": repr(exc)})
        return
    try:
        ready.put(worker)
        if not go.wait(60):
            raise RuntimeError("never told to start")
        started = time.time()
        if task == "claim":
            won = []
            for i in range(300):
                key = f"claim/{i:03d}".encode()
                if transact(store, lambda txn, key=key: txn.put(key, str(worker).encode(),
                                                                overwrite=False)):
                    won.append(key)
            result: Any = won
        else:
            seen = []
            def bump(txn: Any) -> int:
                n = int(txn.get(b"counter") or b"0")
                txn.put(b"counter", str(n + 1).encode())
                # Were n read by two transactions, the second claim of seen/n would fail.
                assert txn.put(f"seen/{n:04d}".encode(), str(worker).encode(), overwrite=False)
                return n

            for _ in range(200):
                # Writers run in parallel: the loser of a conflict is run again (transact).
                seen.append(transact(store, bump))
            result = seen
        out.put({"worker": worker, "result": result, "span": (started, time.time())})
    except BaseException as exc:
        out.put({"worker": worker, "error": repr(exc)})
    finally:
        store.close()


def _open_worker(url: str, go: Any, out: Any) -> None:
    try:
        go.wait(60)
        open_store("postgresql", database_url=url).close()
        out.put("ok")
    except BaseException as exc:
        out.put(repr(exc))


@pytest.mark.slow
def test_postgres_processes_creating_one_store_at_once(pg_cluster: Any) -> None:
    # Found by this test: a process that waited for the creator's lock could still miss the new
    # kv_meta table in its catalog cache and refuse the store as foreign. It failed about one
    # round in five before the fix; three rounds of four processes keep it in sight.
    ctx = multiprocessing.get_context("spawn")
    for round_ in range(3):
        url = pg_cluster.create_database(f"create_race_{os.getpid()}_{round_}")
        go, out = ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=_open_worker, args=(url, go, out)) for _ in range(4)]
        for p in procs:
            p.start()
        time.sleep(0.5)  # let every process import the engine before the start signal
        go.set()
        outcomes = [out.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(30)
        assert outcomes == ["ok"] * 4, outcomes


def _run_two_processes(task: str, url: str) -> list[dict[str, Any]]:
    ctx = multiprocessing.get_context("spawn")  # no inherited sockets or pools from this process
    ready, out, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [
        ctx.Process(target=_process_worker, args=(task, url, w, ready, go, out)) for w in (1, 2)
    ]
    for p in procs:
        p.start()
    try:
        for _ in procs:
            ready.get(timeout=120)
        go.set()
        results = [out.get(timeout=300) for _ in procs]
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
    errors_seen = [r["error"] for r in results if "error" in r]
    assert not errors_seen, errors_seen
    # The two processes really ran at the same time.
    (a0, a1), (b0, b1) = (r["span"] for r in results)
    assert a0 < b1 and b0 < a1, "the workers did not overlap; the race proved nothing"
    return sorted(results, key=lambda r: r["worker"])


@pytest.mark.slow
def test_postgres_insert_if_absent_race_across_processes(make_store: Any) -> None:
    loc = make_store.location("postgresql")
    # The workers also race to create the store's tables in the empty database.
    one, two = _run_two_processes("claim", loc["database_url"])
    won1, won2 = set(one["result"]), set(two["result"])
    all_keys = {f"claim/{i:03d}".encode() for i in range(300)}
    assert not won1 & won2, "a key had two winners"
    assert won1 | won2 == all_keys, "a key had no winner"
    store = make_store.open("postgresql", loc)
    with store.begin() as txn:
        stored = dict(txn.scan(prefix=b"claim/"))
    assert stored == {k: b"1" if k in won1 else b"2" for k in all_keys}


@pytest.mark.slow
def test_postgres_read_modify_write_across_processes_loses_nothing(make_store: Any) -> None:
    loc = make_store.location("postgresql")
    make_store.open("postgresql", loc).close()
    one, two = _run_two_processes("count", loc["database_url"])
    assert sorted(one["result"] + two["result"]) == list(range(400))
    store = make_store.open("postgresql", loc)
    with store.begin() as txn:
        assert txn.get(b"counter") == b"400"
        assert len(list(txn.scan(prefix=b"seen/"))) == 400

"""The SQL backends: SQLite and PostgreSQL, SQLAlchemy Core over one key-value table.

Both keep every pair in ``kv`` (``key`` BLOB/BYTEA primary key, ``value`` BLOB/BYTEA) and the
store's metadata (format, version, backend) in ``kv_meta``, one JSON-encoded value per field. SQLite
compares BLOBs and PostgreSQL compares BYTEA with memcmp, so ``ORDER BY key`` is the engine's
bytewise order without any collation. Statements are SQLAlchemy Core; no ORM anywhere.

Errors: every driver exception goes through :func:`translate` (the one choke point) and leaves as
an :mod:`engine.errors` class. A commit that fails with BackendUnavailableError (the connection
dropped during COMMIT) may or may not have been applied; retrying must be safe for the caller.
"""


from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

from engine import errors

#: Scans read in pages (keyset pagination) so that a large range is never held in memory at once
#: and a ``limit=1`` scan costs one small query; pages grow up to this size.
_FIRST_PAGE = 32
_MAX_PAGE = 1024

schema = sa.MetaData()
kv = sa.Table(
    "kv",
    schema,
    sa.Column("key", sa.LargeBinary, primary_key=True),
    sa.Column("value", sa.LargeBinary, nullable=False),
    # SQLite: the table is its primary-key B-tree, so a key-range scan reads the table in order.
    sqlite_with_rowid=False,
)
kv_meta = sa.Table(
    "kv_meta",
    schema,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

GET = sa.select(kv.c.value).where(kv.c.key == sa.bindparam("k"))
DELETE = kv.delete().where(kv.c.key == sa.bindparam("k"))
READ_META = sa.select(kv_meta.c.name, kv_meta.c.value)
#: Any read of the database: in a fresh transaction it fixes the snapshot the transaction sees.
PIN_SNAPSHOT = sa.select(kv_meta.c.name).limit(1)


# -- the one choke point for driver errors ---------------------------------------------------------

# SQLite primary result codes (the low byte of an extended code).
_SQLITE_ERROR = 1
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_READONLY = 8
SQLITE_IOERR = 10
_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_NOTADB = 26
SQLITE_IOERR_FSYNC = 10 | (4 << 8)
SQLITE_IOERR_DIR_FSYNC = 10 | (5 << 8)


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
    if code in (SQLITE_IOERR_FSYNC, SQLITE_IOERR_DIR_FSYNC):
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
        return errors.WriteConflictError(message)
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


def translate(exc: BaseException) -> errors.EngineError:
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
def driver_errors() -> Iterator[None]:
    try:
        yield
    except _DRIVER_ERRORS as exc:
        raise translate(exc) from exc
    except Exception as exc:
        psycopg = sys.modules.get("psycopg")
        if psycopg is not None and isinstance(exc, psycopg.Error):
            raise translate(exc) from exc
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
PAGE_STATEMENTS = {
    (inclusive, bounded, reverse): _page_statement(inclusive, bounded, reverse)
    for inclusive in (True, False)
    for bounded in (True, False)
    for reverse in (False, True)
}

#: fetch(lower, lower_inclusive, upper, reverse, size) -> the rows (key, value) of one page.
_PageFetcher = Callable[[bytes, bool, "bytes | None", bool, int], Any]


def page_params(lower: bytes, upper: bytes | None, size: int) -> dict[str, Any]:
    params: dict[str, Any] = {"lower": lower, "size": size}
    if upper is not None:
        params["upper"] = upper
    return params


def scan_pages(
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


def read_metadata(rows: Any, where: str) -> dict[str, Any]:
    """The store's metadata from the rows (name, JSON value) of ``READ_META``."""
    meta: dict[str, Any] = {}
    for name, raw in rows:
        try:
            meta[name] = json.loads(raw)
        except ValueError as exc:
            raise errors.CorruptStoreError(
                f"{where}: kv_meta field {name!r} is not JSON: {raw!r}"
            ) from exc
    return meta


def write_metadata(conn: Connection, meta: dict[str, Any]) -> None:
    conn.execute(
        kv_meta.insert(), [{"name": k, "value": json.dumps(v)} for k, v in meta.items()]
    )

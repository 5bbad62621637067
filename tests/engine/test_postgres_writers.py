"""PostgreSQL write transactions run in parallel: two on disjoint keys are inside their writes at
once and both commit; two read-modify-writes of one key cannot both commit (one fails with
WriteConflictError, nothing of it applied) and ``transact`` runs the loser again, so no update is
lost; when every attempt fails ``transact`` gives up with WriteConflictError (over HTTP:
tests/web/test_write_conflict_api.py). Every interleaving below is forced by events, never by
timing."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from engine import Store, Transaction, errors
from engine.indexes import transact

WAIT_S = 60  # a generous bound on a wait that, when the code is right, ends at once


def _run_threads(*targets: Callable[[], None]) -> list[BaseException]:
    failures: list[BaseException] = []

    def guarded(fn: Callable[[], None]) -> None:
        try:
            fn()
        except BaseException as exc:  # reported to the test, not lost in the thread
            failures.append(exc)

    threads = [threading.Thread(target=guarded, args=(t,)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S * 2)
    assert not any(t.is_alive() for t in threads), "a writer hung"
    return failures


def _rendezvous(mine: threading.Event, other: threading.Event) -> None:
    mine.set()
    if not other.wait(WAIT_S):
        raise AssertionError("the other write transaction never got inside its write at the same "
                             "time: writes are serialised")


def test_disjoint_write_transactions_are_inside_their_writes_at_once(make_store: Any) -> None:
    store = make_store.open("postgresql")
    # Enough keys that the two used below sit on different index pages (SSI tracks pages).
    with store.begin(write=True) as txn:
        for i in range(20_000):
            txn.put(b"acct/%05d" % i, b"100")
    inside = [threading.Event(), threading.Event()]
    attempts = [0, 0]

    def writer(n: int, key: bytes) -> Callable[[], None]:
        def go(txn: Transaction) -> None:
            attempts[n] += 1
            balance = int(txn.get(key) or b"0")
            txn.put(key, str(balance + 1).encode())
            _rendezvous(inside[n], inside[1 - n])  # both hold an open, written transaction

        return lambda: transact(store, go)

    failures = _run_threads(writer(0, b"acct/00010"), writer(1, b"acct/19990"))
    assert failures == []
    assert attempts == [1, 1]  # disjoint keys: neither had to run again
    with store.begin() as txn:
        assert txn.get(b"acct/00010") == b"101"
        assert txn.get(b"acct/19990") == b"101"


def _both_read_then_write(store: Store, run: Callable[[Store, Callable[[Transaction], None]], None]
                          ) -> tuple[list[int], list[BaseException]]:
    """Two transactions read the counter, wait until both have read it, then write it + 1.
    Returns how many times each function ran, and what the threads raised."""
    read = [threading.Event(), threading.Event()]
    runs = [0, 0]

    def writer(n: int) -> Callable[[], None]:
        def go(txn: Transaction) -> None:
            runs[n] += 1
            value = int(txn.get(b"counter") or b"0")
            if runs[n] == 1:
                _rendezvous(read[n], read[1 - n])  # both read the same value
            txn.put(b"counter", str(value + 1).encode())

        return lambda: run(store, go)

    return runs, _run_threads(writer(0), writer(1))


def test_conflicting_read_modify_writes_cannot_both_commit(make_store: Any) -> None:
    store = make_store.open("postgresql")

    def once(store: Store, fn: Callable[[Transaction], None]) -> None:
        with store.begin(write=True) as txn:
            fn(txn)

    runs, failures = _both_read_then_write(store, once)
    assert runs == [1, 1]
    assert len(failures) == 1 and isinstance(failures[0], errors.WriteConflictError), failures
    with store.begin() as txn:
        assert txn.get(b"counter") == b"1"  # the winner's; nothing of the loser


def test_transact_runs_the_loser_again_and_loses_no_update(make_store: Any) -> None:
    store = make_store.open("postgresql")
    runs, failures = _both_read_then_write(store, transact)
    assert failures == []
    assert sorted(runs) == [1, 2]  # the loser ran once more, on the winner's value
    with store.begin() as txn:
        assert txn.get(b"counter") == b"2"


def test_many_threads_incrementing_one_counter_lose_nothing(make_store: Any) -> None:
    store = make_store.open("postgresql")
    threads, each = 8, 15

    def bump(txn: Transaction) -> int:
        n = int(txn.get(b"counter") or b"0")
        txn.put(b"counter", str(n + 1).encode())
        # Were n read by two committed transactions, the second claim would fail.
        assert txn.put(b"seen/%04d" % n, b"", overwrite=False)
        return n

    def worker() -> None:
        for _ in range(each):
            transact(store, bump)

    assert _run_threads(*[worker] * threads) == []
    with store.begin() as txn:
        assert txn.get(b"counter") == str(threads * each).encode()
        assert len(list(txn.scan(prefix=b"seen/"))) == threads * each


# A trigger makes PostgreSQL itself fail every write of a key naming prompts with a serialization
# failure (SQLSTATE 40001), as a conflicting writer would on every attempt.
ALWAYS_CONFLICT = """
CREATE FUNCTION always_conflict() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'simulated concurrent writer' USING ERRCODE = 'serialization_failure';
END $$;
CREATE TRIGGER always_conflict BEFORE INSERT OR UPDATE ON kv
    FOR EACH ROW WHEN (position('prompts'::bytea in NEW.key) > 0)
    EXECUTE FUNCTION always_conflict();
"""


def install_always_conflict(database_url: str) -> None:
    engine = sa.create_engine(database_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(ALWAYS_CONFLICT)
    engine.dispose()


@pytest.mark.parametrize("attempts", [1, 3])
def test_transact_gives_up_after_its_attempts(make_store: Any, attempts: int) -> None:
    location = make_store.location("postgresql")
    store = make_store.open("postgresql", location)
    install_always_conflict(location["database_url"])
    runs = 0

    def go(txn: Transaction) -> None:
        nonlocal runs
        runs += 1
        txn.put(b"prompts/x", b"v")

    with pytest.raises(errors.WriteConflictError, match=f"after {attempts} attempts"):
        transact(store, go, attempts=attempts)
    assert runs == attempts

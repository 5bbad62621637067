"""``autobyteus-store``: one command-line tool with a subcommand per job, in the style of py-lmdb's
``lmdb/tool.py`` (one ``cmd_<name>`` function per subcommand).

    autobyteus-store dump     [filters] [-o FILE]  a consistent snapshot as JSON Lines
    autobyteus-store stats    [--json]             keys, bytes and TTL entries per domain
    autobyteus-store load     FILE [--force]       write a dump into a store (verified first)
    autobyteus-store backup   DEST_DIR             a hot, consistent copy of the store's files
    autobyteus-store migrate  --to PROVIDER ...    copy a whole store to another provider
    autobyteus-store check    [--repair]           index consistency of every domain collection
    autobyteus-store outbox   list | retry ID      the channel outbox (tools.outbox)

``autobyteus-dump`` and ``python -m tools.dump`` are ``autobyteus-store dump``; ``python -m tools``
is ``autobyteus-store``. The store is chosen as the server chooses it (PERSISTENCE_PROVIDER,
AUTOBYTEUS_DATA_DIR, AUTOBYTEUS_DATABASE_URL), flags winning. Tools that only read open the store
read-only and work while the server runs. Data goes to stdout, progress and summaries to stderr;
a failure is one line on stderr and a documented exit code (see tools.common), never a traceback.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from typing import IO, Any

from engine import Store, Transaction, errors
from engine.indexes import transact
from engine.indexes.layout import (
    NAMESPACES,
    NS_COLLECTION,
    NS_TTL,
    classify,
    names_in,
    ttl_expiry_of,
)
from engine.keys import pack, unpack
from tools import dumpfile
from tools import outbox as outbox_tool
from tools.common import (
    EXIT_CODES_HELP,
    EXIT_NOT_EMPTY,
    EXIT_OK,
    EXIT_PROBLEMS,
    EXIT_UNSUPPORTED,
    EXIT_USAGE,
    EXIT_VERIFY_FAILED,
    Location,
    Progress,
    ToolError,
    erase,
    exit_code_of,
    human_bytes,
    is_empty,
    now_us,
    progress_wanted,
    providers_text,
)
from tools.domainsupport import Discovery, discover, expand_domains

PROG = "autobyteus-store"
DEFAULT_BATCH = 1000


def _say(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def _location(args: argparse.Namespace) -> Location:
    return Location.resolve(args.provider, args.data_dir, args.database_url)


@contextlib.contextmanager
def _opened(loc: Location, *, readonly: bool, create: bool = False) -> Iterator[Store]:
    store = loc.open(readonly=readonly, create=create)
    try:
        yield store
    finally:
        store.close()


def _write_batches(
    store: Store, pairs: Iterator[tuple[bytes, bytes]], batch_size: int, progress: Progress
) -> int:
    """Put ``pairs`` in write transactions of ``batch_size`` keys; returns how many."""
    n = 0
    batch: list[tuple[bytes, bytes]] = []

    def put_batch(txn: Transaction) -> None:
        for k, v in batch:
            txn.put(k, v)

    def flush() -> None:
        transact(store, put_batch)  # postgresql: a server writing meanwhile may conflict
        progress.tick(len(batch))
        batch.clear()

    for k, v in pairs:
        batch.append((k, v))
        n += 1
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    return n


def _digest_pair(h: Any, key: bytes, value: bytes) -> None:
    h.update(len(key).to_bytes(4, "big"))
    h.update(key)
    h.update(len(value).to_bytes(8, "big"))
    h.update(value)


def _prepare_target(store: Store, loc: Location, force: bool) -> None:
    if is_empty(store):
        return
    if not force:
        raise ToolError(
            f"{loc.describe()} is not empty; --force erases it before writing", EXIT_NOT_EMPTY
        )
    n = erase(store)
    _say(f"erased {n} keys from {loc.describe()} (--force)")


# -- key specifications (--key, --prefix) ------------------------------------------------------
def parse_key_spec(spec: str) -> bytes:
    """A key or prefix from the command line.

    ``["c", "prompts", "r"]`` (a JSON array) is a tuple packed as the index layer packs it (str,
    int, null, {"base64": ...} for bytes); ``hex:...``, ``base64:...`` and ``raw:...`` give the
    bytes themselves; anything else is its UTF-8 bytes.
    """
    try:
        if spec.startswith("["):
            elements = json.loads(spec)
            if not isinstance(elements, list):
                raise ValueError("not a JSON array")
            return pack(
                base64.b64decode(e["base64"], validate=True) if isinstance(e, dict) else e
                for e in elements
            )
        if spec.startswith("hex:"):
            return bytes.fromhex(spec[4:])
        if spec.startswith("base64:"):
            return base64.b64decode(spec[7:], validate=True)
        if spec.startswith("raw:"):
            return spec[4:].encode("utf-8")
        return spec.encode("utf-8")
    except (ValueError, TypeError, KeyError) as exc:
        raise ToolError(f"bad key specification {spec!r}: {exc}", EXIT_USAGE)


def _candidates(
    txn: Transaction, keys: list[bytes], prefixes: list[bytes], domains: set[str]
) -> Iterator[tuple[bytes, bytes]]:
    """The pairs the filters may select, in key order, read with as few scans as possible."""
    if keys:
        for k in sorted(set(keys)):
            v = txn.get(k)
            if v is not None:
                yield k, v
        return
    if prefixes:
        ranges = prefixes
    elif domains:
        ranges = [pack((ns, d)) for d in domains for ns in NAMESPACES]
    else:
        yield from txn.scan()
        return
    kept: list[bytes] = []
    for p in sorted(set(ranges)):
        if not (kept and p.startswith(kept[-1])):  # covered by a shorter prefix already
            kept.append(p)
    for p in kept:
        yield from txn.scan(prefix=p)


# -- dump ------------------------------------------------------------------------------------------
def cmd_dump(args: argparse.Namespace) -> int:
    loc = _location(args)
    discovery = discover() if args.domain else None
    domains = expand_domains(args.domain or [], discovery)
    prefixes = [parse_key_spec(s) for s in args.prefix or []]
    keys = [parse_key_spec(s) for s in args.key or []]
    indexes = args.include_indexes or args.all
    expired = args.include_expired or args.all
    progress = Progress("dump", progress_wanted(args.progress))

    with contextlib.ExitStack() as stack:
        store = stack.enter_context(_opened(loc, readonly=True))
        out, commit_output = _output(args.output, stack)
        # One read transaction for the whole dump: the snapshot is consistent on every backend
        # (an LMDB reader, a pinned file-store version, a SQLite WAL snapshot, a PostgreSQL
        # REPEATABLE READ transaction), and none of them blocks the server's writers.
        with store.begin() as txn:
            now = now_us()
            header = {
                "provider": loc.provider,
                "time": dumpfile.iso_time(now),
                "store": store.metadata,
                "view": "raw" if args.raw else "decoded",
                "indexes": bool(indexes),
                "expired": bool(expired),
                "filters": {"domain": sorted(domains), "prefix": [p.hex() for p in prefixes],
                            "key": [k.hex() for k in keys]},
                "complete": bool(indexes and expired and not (domains or prefixes or keys)),
            }
            writer = dumpfile.DumpWriter(out, header)
            key_set = set(keys)
            for k, v in _candidates(txn, keys, prefixes, domains):
                if key_set and k not in key_set:
                    continue
                if prefixes and not any(k.startswith(p) for p in prefixes):
                    continue
                info = classify(k, v)
                if domains and info.domain not in domains:
                    continue
                if info.is_index and not indexes:
                    continue
                if info.expired(now) and not expired:
                    continue
                writer.add(dumpfile.key_line(k, v, None if args.raw else info))
                progress.tick()
            footer = writer.finish()
        commit_output()
    progress.done()
    if not args.quiet:
        where = "stdout" if args.output in (None, "-") else args.output
        _say(f"dump: {footer['count']} keys from the {loc.describe()} to {where}; "
             f"sha256 {footer['sha256']}")
    return EXIT_OK


def _output(path: str | None, stack: contextlib.ExitStack) -> tuple[IO[bytes], Any]:
    """The dump's stream, and what makes it final. A file is written under a temporary name and
    renamed when the dump is complete, so a failed dump never leaves a file that looks whole."""
    if path in (None, "-"):
        return sys.stdout.buffer, lambda: None
    directory = os.path.dirname(os.path.abspath(path))  # type: ignore[arg-type]
    try:
        fd, tmp = tempfile.mkstemp(prefix=".dump-", dir=directory)
    except OSError as exc:
        raise ToolError(f"cannot write the dump to {path}: {exc.strerror}", EXIT_USAGE)
    f = os.fdopen(fd, "wb")
    done = False

    def cleanup() -> None:
        if not f.closed:
            f.close()
        if not done:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    stack.callback(cleanup)

    def commit() -> None:
        nonlocal done
        f.flush()
        os.fsync(f.fileno())
        f.close()
        os.replace(tmp, path)  # type: ignore[arg-type]
        done = True

    return f, commit


# -- stats -----------------------------------------------------------------------------------------
_STAT_FIELDS = ("records", "record_bytes", "index_entries", "index_bytes", "sequence",
                "ttl_live", "ttl_expired", "other_keys")


def cmd_stats(args: argparse.Namespace) -> int:
    loc = _location(args)
    per: dict[str, dict[str, int]] = {}
    total_keys = total_bytes = 0
    with _opened(loc, readonly=True) as store:
        with store.begin() as txn:
            now = now_us()
            for k, v in txn.scan():
                info = classify(k, v)
                row = per.setdefault(info.domain or "(other)", dict.fromkeys(_STAT_FIELDS, 0))
                size = len(k) + len(v)
                total_keys += 1
                total_bytes += size
                if info.kind == "record":
                    row["records"] += 1
                    row["record_bytes"] += size
                elif info.is_index:
                    row["index_entries"] += 1
                    row["index_bytes"] += size
                elif info.kind == "sequence":
                    try:
                        row["sequence"] = int(unpack(v)[0])  # type: ignore[arg-type]
                    except (ValueError, IndexError, TypeError):
                        row["other_keys"] += 1
                elif info.kind == "ttl":
                    row["ttl_expired" if info.expired(now) else "ttl_live"] += 1
                else:
                    row["other_keys"] += 1
        backend = store.stats()
    by_domain = dict(sorted(per.items()))
    report = {
        "provider": loc.provider,
        "store": loc.describe(),
        "keys": total_keys,
        "bytes": total_bytes,
        "domains": by_domain,
        "backend": backend,
    }
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2, default=str) + "\n")
        return EXIT_OK
    out = sys.stdout
    out.write(f"{loc.describe()}: {total_keys} keys, {human_bytes(total_bytes)} of keys+values\n\n")
    headings = ("domain", "records", "bytes", "index", "idx bytes", "sequence", "ttl live",
                "ttl expired", "other")
    rows: list[tuple[str, ...]] = [headings, *[
        (name, str(r["records"]), human_bytes(r["record_bytes"]), str(r["index_entries"]),
         human_bytes(r["index_bytes"]), str(r["sequence"] or "-"), str(r["ttl_live"]),
         str(r["ttl_expired"]), str(r["other_keys"]))
        for name, r in by_domain.items()
    ]]
    widths = [max(len(cells[i]) for cells in rows) for i in range(len(headings))]
    for cells in rows:
        text = [cells[0].ljust(widths[0])]
        text += [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        out.write("  ".join(text).rstrip() + "\n")
    out.write("\nbackend:\n")
    for name, value in _flatten(backend):
        out.write(f"  {name}: {value}\n")
    return EXIT_OK


def _flatten(d: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _flatten(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


# -- load ------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _dump_input(path: str) -> Iterator[IO[bytes]]:
    """The dump as a seekable file: it is read twice (verify, then write), so stdin is spooled."""
    if path == "-":
        with tempfile.TemporaryFile() as spool:
            shutil.copyfileobj(sys.stdin.buffer, spool)
            yield spool
        return
    try:
        f = open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        raise ToolError(f"cannot read the dump {path}: {exc.strerror}", EXIT_USAGE)
    with f:
        yield f


def cmd_load(args: argparse.Namespace) -> int:
    loc = _location(args)
    with _dump_input(args.input) as f:
        # Everything is checked before the first write (before the target is even opened).
        dump = dumpfile.verify(f)
        _say(f"load: dump verified: {dump.count} keys from a {dump.header.get('provider')} store "
             f"taken {dump.header.get('time')}")
        progress = Progress("load", progress_wanted(args.progress))
        with _opened(loc, readonly=False, create=True) as store:
            _prepare_target(store, loc, args.force)
            pairs = dumpfile.pairs(f)
            if not dump.header.get("indexes"):
                pairs = _with_ttl_expiry(pairs)
            written = _write_batches(store, pairs, args.batch_size, progress)
            progress.done()
            problems, rebuilt = _after_load(store, dump, args.rebuild_indexes)
            if not args.no_verify:
                _verify_loaded(store, f, rebuilt)
    _say(f"load: {written} keys written to the {loc.describe()} ({dump.count} from the dump)")
    if problems:
        for line in problems:
            _say(f"load: {line}")
        return EXIT_PROBLEMS
    return EXIT_OK


def _with_ttl_expiry(pairs: Iterator[tuple[bytes, bytes]]) -> Iterator[tuple[bytes, bytes]]:
    """A dump without index entries lacks the TTL expiry index; it is derived from each TTL key
    (``("t", space) + suffix -> pack((expires_us, key))`` gives ``("t", space, "x", expires_us)
    + suffix``, as engine.indexes.TtlSpace writes it), so the sweeper finds the key again."""
    for k, v in pairs:
        yield k, v
        info = classify(k, v)
        if info.kind == "ttl" and info.expires_us and info.domain is not None:
            yield ttl_expiry_of(k, info.domain, info.expires_us), b""


def _after_load(store: Store, dump: dumpfile.VerifiedDump, force_rebuild: bool
                ) -> tuple[list[str], set[str]]:
    """Indexes after a load. A dump that carries them (``indexes`` in its header: dump --all or
    --include-indexes) is loaded verbatim; otherwise every index of the dumped collections is
    rebuilt from the records with indexes.repair, using the domain collections that import.
    Returns (problems to report, collections rebuilt)."""
    if dump.header.get("indexes") and not force_rebuild:
        return [], set()
    if not dump.collections:
        return [], set()
    discovery = discover()
    known = discovery.by_name()
    cols = [known[name] for name in sorted(dump.collections) if name in known]
    problems: list[str] = []
    if cols:
        from engine.indexes import repair

        report = repair(store, cols)
        _say("load: indexes rebuilt for " + ", ".join(c.name for c in cols))
        problems += [f"{p.collection}: {p.kind} [{p.index or '-'}] record {p.record_id}: "
                     f"{p.detail}" for p in report.problems]
    missing = sorted(dump.collections - set(known))
    if missing:
        problems.append(
            "the indexes of " + ", ".join(missing) + " were not rebuilt: their domain does not "
            "import here" + _failures(discovery) + "; run `autobyteus-store check --repair` once "
            "it does"
        )
    return problems, {c.name for c in cols}


def _failures(discovery: Discovery) -> str:
    if not discovery.failures:
        return ""
    return " (" + "; ".join(f"{k}: {v}" for k, v in sorted(discovery.failures.items())) + ")"


def _verify_loaded(store: Store, f: IO[bytes], rebuilt: set[str]) -> None:
    """Every dumped key reads back with its exact bytes (index entries and sequences of rebuilt
    collections excepted: repair owns them)."""
    with store.begin() as txn:
        for k, v in dumpfile.pairs(f):
            if rebuilt:
                info = classify(k, v)
                if info.domain in rebuilt and info.kind != "record":
                    continue
            if txn.get(k) != v:
                raise ToolError(f"verification failed: key {k!r} reads back different",
                                EXIT_VERIFY_FAILED)


# -- backup ----------------------------------------------------------------------------------------
def cmd_backup(args: argparse.Namespace) -> int:
    loc = _location(args)
    if loc.provider == "postgresql":
        raise ToolError(
            "backup: PostgreSQL's own tool is the standard for a hot consistent copy: "
            "pg_dump --format=custom --table=kv --table=kv_meta DATABASE > backup.pgdump "
            "(restore with pg_restore); a provider-neutral alternative is "
            "`autobyteus-store dump --all -o FILE`",
            EXIT_UNSUPPORTED,
        )
    dest_root = args.destination
    target = os.path.join(dest_root, loc.provider)
    if os.path.exists(target) and os.listdir(target):
        raise ToolError(f"backup: {target} exists and is not empty; choose an empty destination",
                        EXIT_NOT_EMPTY)
    created = not os.path.exists(target)
    try:
        with _opened(loc, readonly=True) as store:
            store.backup(target, compact=not args.no_compact)
        # The copy must open as a store of its own, and be read whole.
        copied = Location(loc.provider, data_dir=dest_root)
        with _opened(copied, readonly=True) as backup, backup.begin() as txn:
            n = sum(1 for _ in txn.scan())
    except BaseException:
        if created:
            shutil.rmtree(target, ignore_errors=True)
        raise
    _say(f"backup: {n} keys of the {loc.describe()} copied to {target} "
         f"(open it with --provider {loc.provider} --data-dir {dest_root})")
    return EXIT_OK


# -- migrate ---------------------------------------------------------------------------------------
def cmd_migrate(args: argparse.Namespace) -> int:
    src = _location(args)
    dst = Location.resolve(args.to, args.to_data_dir, args.to_database_url)
    if src.same_as(dst):
        raise ToolError("migrate: source and target are the same store", EXIT_USAGE)
    progress = Progress("migrate", progress_wanted(args.progress))
    with _opened(src, readonly=True) as source, \
            _opened(dst, readonly=False, create=True) as target:
        _prepare_target(target, dst, args.force)
        copied = hashlib.sha256()
        n = 0

        def digested(pairs: Iterator[tuple[bytes, bytes]]) -> Iterator[tuple[bytes, bytes]]:
            nonlocal n
            for k, v in pairs:  # the digest of the source snapshot, as read
                _digest_pair(copied, k, v)
                n += 1
                yield k, v

        with source.begin() as txn:  # one snapshot of the source, however long the copy takes
            _write_batches(target, digested(txn.scan()), args.batch_size, progress)
        progress.done()
        # Read the target back whole and compare with what the snapshot held, key by key in
        # order (both sides order keys bytewise), through a digest of every (key, value).
        readback = hashlib.sha256()
        m = 0
        with target.begin() as txn:
            for k, v in txn.scan():
                _digest_pair(readback, k, v)
                m += 1
    if m != n or readback.digest() != copied.digest():
        raise ToolError(
            f"migrate: verification failed: copied {n} keys, the target reads back {m} keys "
            f"{'with the same count but different content' if m == n else ''}".rstrip(),
            EXIT_VERIFY_FAILED,
        )
    _say(f"migrate: {n} keys copied from the {src.describe()} to the {dst.describe()}; "
         f"verified (sha256 {copied.hexdigest()})")
    return EXIT_OK


# -- check -----------------------------------------------------------------------------------------
def cmd_check(args: argparse.Namespace) -> int:
    from engine.indexes import check, repair

    loc = _location(args)
    discovery = discover()
    cols = discovery.collections
    if args.domain:
        wanted = expand_domains(args.domain, discovery)
        cols = [c for c in cols if c.name in wanted]
    if not cols:
        raise ToolError("check: no domain collections to check" + _failures(discovery),
                        EXIT_USAGE)
    if discovery.failures and not discovery.complete:
        _say("check: some domains do not import and are not checked" + _failures(discovery))
    with _opened(loc, readonly=not args.repair) as store:
        if args.repair:
            fixed = repair(store, cols)
            _say(f"check: indexes rebuilt for {', '.join(c.name for c in cols)}")
            for p in fixed.problems:
                _say(f"check: repair left: {p.collection}: {p.kind} record {p.record_id}: "
                     f"{p.detail}")
        report = check(store, cols)
        unknown = _unknown_collections(store, {c.name for c in cols})
    if args.json:
        out = {
            "ok": report.ok,
            "records": report.records,
            "problems": [
                {"collection": p.collection, "kind": p.kind, "index": p.index,
                 "record_id": p.record_id, "detail": p.detail,
                 "key": p.key.hex() if p.key is not None else None}
                for p in report.problems
            ],
            "unchecked_collections": unknown,
        }
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
    else:
        sys.stdout.write(str(report) + "\n")
    if unknown:
        _say("check: collections in the store with no definition here (not checked): "
             + ", ".join(unknown))
    _say(f"check: {len(report.problems)} problems in {len(cols)} collections")
    return EXIT_OK if report.ok else EXIT_PROBLEMS


def ttl_space_names(store: Store) -> list[str]:
    """The TTL spaces present in the store."""
    with store.begin() as txn:
        return names_in(txn, NS_TTL)


def cmd_sweep(args: argparse.Namespace) -> int:
    from engine.indexes import TtlSpace

    loc = _location(args)
    with _opened(loc, readonly=False) as store:
        names = args.space or ttl_space_names(store)
        total = 0
        for name in names:
            purged = TtlSpace(name).sweep(store, batch_size=args.batch_size)
            total += purged
            _say(f"sweep: {name}: {purged} expired keys purged")
    if args.json:
        sys.stdout.write(json.dumps({"purged": total, "spaces": names}) + "\n")
    _say(f"sweep: {total} expired keys purged in {len(names)} TTL spaces")
    return EXIT_OK


def _unknown_collections(store: Store, known: set[str]) -> list[str]:
    """Collection names present in the store that no domain defines."""
    with store.begin() as txn:
        return [n for n in names_in(txn, NS_COLLECTION) if n not in known]


def cmd_outbox(args: argparse.Namespace) -> int:
    return outbox_tool.run(args, _location(args))


# -- the parser ------------------------------------------------------------------------------------
def _store_options(p: argparse.ArgumentParser, *, migrate: bool = False) -> None:
    g = p.add_argument_group(
        "source store" if migrate else "store",
        "flags win over PERSISTENCE_PROVIDER, AUTOBYTEUS_DATA_DIR and AUTOBYTEUS_DATABASE_URL",
    )
    names = ["--provider"] + (["--from"] if migrate else [])
    g.add_argument(*names, dest="provider", metavar="PROVIDER",
                   help=f"one of {providers_text()} (default: $PERSISTENCE_PROVIDER or lmdb)")
    names = ["--data-dir"] + (["--from-data-dir"] if migrate else [])
    g.add_argument(*names, dest="data_dir", metavar="DIR",
                   help="where lmdb, file and sqlite stores live (<DIR>/<provider>/; "
                        "default: $AUTOBYTEUS_DATA_DIR or ./data)")
    names = ["--database-url"] + (["--from-database-url"] if migrate else [])
    g.add_argument(*names, dest="database_url", metavar="URL",
                   help="PostgreSQL URL (default: $AUTOBYTEUS_DATABASE_URL)")


def _progress_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress on stderr (default: when stderr is a terminal)")


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}")
    return n


def add_dump_arguments(p: argparse.ArgumentParser) -> None:
    _store_options(p)
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write the dump to FILE (renamed into place when complete; default: "
                        "stdout)")
    f = p.add_argument_group("filters (repeatable; alternatives of one filter are OR-ed, "
                             "different filters AND-ed)")
    f.add_argument("--domain", action="append", metavar="NAME",
                   help="a collection, sequence or TTL space name (e.g. prompts), or a domain "
                        "package name standing for its collections")
    f.add_argument("--prefix", action="append", metavar="SPEC",
                   help='keys starting with SPEC: a JSON array is a packed tuple prefix '
                        '(\'["c","prompts","r"]\'); hex:..., base64:... or raw:... give bytes')
    f.add_argument("--key", action="append", metavar="SPEC", help="exactly this key (as --prefix)")
    v = p.add_argument_group("what to include")
    v.add_argument("--raw", action="store_true",
                   help="only the exact engine keys and values, without the decoded view")
    v.add_argument("--include-indexes", action="store_true",
                   help="also index entries (unique, ordered, roll-up, TTL expiry)")
    v.add_argument("--include-expired", action="store_true", help="also expired TTL keys")
    v.add_argument("--all", action="store_true",
                   help="everything: --include-indexes --include-expired (a complete copy, "
                        "loaded verbatim)")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary on stderr")
    _progress_option(p)


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Inspect, copy and check an autobyteus persistence store.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=description, epilog=EXIT_CODES_HELP,
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    p = command("dump", "a consistent snapshot as JSON Lines on stdout",
                "Write one consistent snapshot (a single read transaction) as JSON Lines: a "
                "header, one line per key (exact bytes plus a decoded view), and a footer with "
                "the count and a sha256 checksum. Read-only; does not block a running server.")
    add_dump_arguments(p)

    p = command("stats", "keys, bytes and TTL entries per domain; backend facts",
                "Records, bytes, index entries and TTL entries (live, expired) per domain, from "
                "one read transaction, and what the backend reports (LMDB: map use, pages, "
                "reader slots).")
    _store_options(p)
    p.add_argument("--json", action="store_true", help="JSON on stdout instead of a table")

    p = command("load", "write a dump into a store (verified before any write)",
                "Verify a dump whole (header, every line, count, checksum), then write its exact "
                "keys and values in batches. A dump with indexes (dump --all) is loaded "
                "verbatim; otherwise the indexes of its collections are rebuilt from the "
                "records (indexes.repair) with the domain collections that import. Every key "
                "is read back afterwards.")
    p.add_argument("input", metavar="FILE", help="the dump (- for stdin)")
    _store_options(p)
    p.add_argument("--force", action="store_true",
                   help="erase a non-empty target first (without it, a non-empty target is "
                        "refused)")
    p.add_argument("--rebuild-indexes", action="store_true",
                   help="rebuild indexes even when the dump carries them")
    p.add_argument("--no-verify", action="store_true", help="skip reading every key back")
    p.add_argument("--batch-size", type=_positive, default=DEFAULT_BATCH, metavar="N",
                   help=f"keys per write transaction (default {DEFAULT_BATCH})")
    _progress_option(p)

    p = command("backup", "a hot consistent copy of the store into DEST/<provider>/",
                "Copy the store while the server runs: lmdb with mdb_env_copy (compacting), "
                "sqlite with the online backup API, file by copying snapshot and journal under "
                "the store's shared lock. The copy opens with --data-dir DEST. postgresql: use "
                "pg_dump (exit code 7).")
    p.add_argument("destination", metavar="DEST", help="a data directory for the copy")
    _store_options(p)
    p.add_argument("--no-compact", action="store_true", help="lmdb: copy free pages too")

    p = command("migrate", "copy a whole store to another provider, then verify it",
                "Copy every key of the source (one read snapshot) into the target in batches, "
                "then read the target back whole and compare (count and sha256 over every key "
                "and value in order).")
    _store_options(p, migrate=True)
    g = p.add_argument_group("target store")
    g.add_argument("--to", required=True, metavar="PROVIDER",
                   help=f"one of {providers_text()}")
    g.add_argument("--to-data-dir", metavar="DIR",
                   help="the target's data directory (default: $AUTOBYTEUS_DATA_DIR or ./data)")
    g.add_argument("--to-database-url", metavar="URL",
                   help="the target's PostgreSQL URL (default: $AUTOBYTEUS_DATABASE_URL)")
    p.add_argument("--force", action="store_true", help="erase a non-empty target first")
    p.add_argument("--batch-size", type=_positive, default=DEFAULT_BATCH, metavar="N",
                   help=f"keys per write transaction (default {DEFAULT_BATCH})")
    _progress_option(p)

    p = command("check", "index consistency of every domain collection (--repair rebuilds)",
                "Check every index entry, unique claim, roll-up and sequence of the domain "
                "collections (domains.registry.all_collections) against the records. Exit code 1 "
                "when problems are found. --repair rebuilds them (stop the server's writers "
                "first), then checks again.")
    _store_options(p)
    p.add_argument("--repair", action="store_true", help="rebuild indexes, then check again")
    p.add_argument("--domain", action="append", metavar="NAME",
                   help="only these collections or domain packages")
    p.add_argument("--json", action="store_true", help="the report as JSON on stdout")

    p = command("sweep", "purge expired TTL (idempotency) keys now",
                "Delete the expired keys of every TTL space in the store (or --space NAME), in "
                "short batches of their own write transactions, as the server's background "
                "sweeper does. Safe while the server runs.")
    _store_options(p)
    p.add_argument("--space", action="append", metavar="NAME", help="only these TTL spaces")
    p.add_argument("--batch-size", type=_positive, default=256, metavar="N",
                   help="keys per write transaction (default 256)")
    p.add_argument("--json", action="store_true", help="the count as JSON on stdout")

    p = command("outbox", "the channel outbox: list entries, put a dead letter back",
                outbox_tool.DESCRIPTION)
    outbox_tool.add_arguments(p, _store_options)
    return parser


COMMANDS = {name[4:]: fn for name, fn in globals().items() if name.startswith("cmd_")}


def run(args: argparse.Namespace) -> int:
    """Run a parsed command; every failure becomes a message on stderr and an exit code."""
    try:
        return COMMANDS[args.command](args)
    except ToolError as exc:
        _say(f"{PROG} {args.command}: {exc}")
        return exc.code
    except errors.EngineError as exc:
        _say(f"{PROG} {args.command}: {type(exc).__name__}: {exc}")
        return exit_code_of(exc)
    except KeyboardInterrupt:
        _say(f"{PROG} {args.command}: interrupted")
        return 130
    except BrokenPipeError:
        # The reader of stdout went away (dump | head): not an error worth a traceback. Point
        # stdout at /dev/null so that the interpreter's final flush does not fail again.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 141
    except OSError as exc:
        _say(f"{PROG} {args.command}: {exc}")
        return exit_code_of(exc)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())

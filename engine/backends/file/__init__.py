"""The file backend: the store as JSON files a person can read, in one directory.

Files under ``path``:

``meta.json``
    The metadata record (format, version, backend), written once at creation, checked at open.
``snapshot.json``
    Every record as of journal sequence ``seq``, one ``[key, value]`` pair per line, in key order.
    The first line carries ``seq``, the record count and a CRC-32 of everything after that line.
``journal.jsonl``
    One line per flushed batch since the snapshot (or a little before it, see below)::

        {"crc32": "1a2b3c4d", "entry": {"seq": 7, "put": [["key", "value"]], "delete": ["gone"]}}

    The CRC-32 covers the exact bytes of the ``entry`` object as they stand in the line.
``lock``
    Empty; ``flock``'ed exclusively by a writer for a whole batch, shared by a reader catching up.

Keys and values are JSON strings when their bytes are valid UTF-8, else ``{"base64": "..."}``.

Crash safety. A batch is one journal line written with one ``pwrite`` and then fsync'ed; only then
is it visible to readers and acknowledged. A crash mid-write leaves a torn last line, which the next
open drops (and a writer truncates away); a damaged line with valid lines after it is not a torn
write but damage, and refuses to open. When the journal outgrows ``max(compact_min_bytes, size of
the snapshot)`` the writer compacts: it writes a new snapshot covering the journal's last sequence
(temp file, fsync, ``os.replace``, fsync of the directory), then replaces the journal by an empty
one the same way. A crash between the two leaves an old journal whose entries are all covered by
the snapshot: replay skips entries at or below the snapshot's ``seq``, and the next writer resets
the journal. Writing the snapshot costs its size, but it happens only after at least as many bytes
went to the journal, so compaction is amortised O(1) per byte written.

Isolation in a process. The committed records live in memory (:class:`~.table.Committed`: a dict and
a chunked sorted key list). Read transactions never block writers: each pins the version it began
at, and while any reader is pinned, a commit keeps the values it replaces in a per-key history,
so that an old reader still sees its version; the history is dropped when the readers are gone
(as LMDB keeps old pages for old readers). A write transaction sees the committed records plus
the pending changes of the batch's earlier members, and the batch is published only after its
journal line is durable.

Several processes. A writer holds ``LOCK_EX`` from the start of its batch to its end and, before
anything else, catches up with what other processes appended (the journal grew) or compacted (the
journal or snapshot file was replaced: its inode differs from the one we hold open, so inode reuse
cannot fool the check). A read transaction stats the journal when it begins; if the file changed,
it catches up under ``LOCK_SH``, which waits for a writer in another process to finish its batch,
so a reader never sees another process's batch before that batch is durable. Readers in other
processes (the dump tool) open with ``readonly=True`` and work the same way.
"""

from engine.backends.file.store import FileStore

__all__ = ["FileStore"]

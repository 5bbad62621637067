"""The file backend: the store as JSON Lines a person can read, in one directory.

Files under ``path`` (the line formats are in :mod:`engine.backends.file.format`):

``meta.json``
    The metadata record (format, version, backend), written at creation, checked at open;
    ``format_version`` 2 (a version-1 store is read as it is, and upgraded by the first writer).
``snapshot.json``
    Every pair as of journal entry ``seq``, one per line: records grouped by collection, then
    sequences, TTL keys, other keys, and the derived index entries apart at the end.
``journal.jsonl``
    The batches since then: each changed pair as a line, then the batch's checksummed commit line.
``journal-<seq>.jsonl``
    A closed journal segment (entries up to ``seq``) while a snapshot covering it is written.
``lock``
    Empty; ``flock``'ed exclusively by a writer for a whole batch, shared by a reader catching up.

Crash safety. A batch is appended with one ``pwrite`` and then fsync'ed; only then is it visible
to readers and acknowledged. A crash mid-write leaves a batch without its valid commit line at
the end, which the next open drops (and a writer truncates away); a damaged batch with valid
batches after it is not a torn write but damage, and refuses to open.

Compaction, off the write path. When the journal (with any closed segments) outgrows
``max(compact_min_bytes, size of the snapshot)``, the writer that just committed closes it: it
renames ``journal.jsonl`` to ``journal-<seq>.jsonl``, creates an empty ``journal.jsonl`` and
fsyncs the directory (a few milliseconds, once per compaction), and pins the state at ``seq`` as
a read transaction would. A background thread writes the snapshot of that state to a temp file
and fsyncs it while writers go on appending to the new journal. Then, holding the writer mutex
and ``LOCK_EX`` for a moment, it renames the temp file over ``snapshot.json``, fsyncs the
directory, and only then removes the segments the snapshot covers. A crash at any point leaves
a snapshot and the segments after it: replay reads the snapshot, then every segment newer than
it, then the journal (a missing ``journal.jsonl`` after a crash mid-switch is an empty one), and
skips entries the snapshot covers. A snapshot costs its size, but it is written only after at
least as many bytes went to the journal, so compaction is amortised O(1) per byte written; at
most one runs at a time, and one that fails leaves its segments for the next.

Format version 1 (keys and values as JSON strings or base64, one journal line per batch) is read
by :mod:`engine.backends.file.format_v1`. A writer opening a version-1 store upgrades it in place,
each step replacing one file whole (temp file, fsync, rename, fsync of the directory): first a
version-2 snapshot covering every entry, then an empty journal, last ``meta.json``; a crash
between two steps leaves files of either version, which open, and the next writer upgrades
again.

Isolation in a process. The committed records live in memory (:class:`~.table.Committed`: a dict and
a chunked sorted key list). Read transactions never block writers: each pins the version it began
at, and while any reader is pinned, a commit keeps the values it replaces in a per-key history,
so that an old reader still sees its version; the history is dropped when the readers are gone
(as LMDB keeps old pages for old readers). A write transaction sees the committed records plus
the pending changes of the batch's earlier members, and the batch is published only after its
journal batch is durable.

Several processes. A writer holds ``LOCK_EX`` from the start of its batch to its end and, before
anything else, catches up with what other processes appended (the journal grew) or switched to
a new segment (``journal.jsonl`` is another file than the one we hold open, so inode reuse cannot
fool the check: then it reads everything again). A read transaction stats the journal when it
begins; if the file changed, it catches up under ``LOCK_SH``, which waits for a writer in another
process to finish its batch, so a reader never sees another process's batch before that batch is
durable. Readers in other
processes (the dump tool) open with ``readonly=True`` and work the same way.
"""

from engine.backends.file.store import FileStore

__all__ = ["FileStore"]

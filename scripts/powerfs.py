"""A FUSE filesystem that forgets, on a simulated power cut, everything that was not synced.

    python -m scripts.powerfs MOUNTPOINT IMAGE [--trigger KIND --countdown N] [--seed S]

Every file and directory lives in this process's memory, as two states: what the programs on the
mount see now, and what a disk would hold after a power cut. A file's data (and size) reaches the
second state only when the file is fsynced (``fsync``, ``fdatasync``, or a write through an
``O_SYNC``/``O_DSYNC`` descriptor); a directory's entries (creates, unlinks, renames, mkdir) only
when the directory itself is fsynced. That is what POSIX promises and no more: a file's fsync
does not make its name durable, and a rename is not durable before its directory's fsync (ext4
often does more; a program must not count on it).

A cut keeps the durable state of everything reachable from the root's durable entries, and
optionally tears the last unsynced write of a file that survives, at a 512-byte boundary (a
sector): either that write alone lands in part, or every write before it lands and it lands in
part. The image is pickled to IMAGE (on the real disk); the next mount starts from it.

After a cut every operation blocks until the controller says ``release``, and then fails with
EIO. The controller kills the programs on the mount in between, so nothing they do after the cut
reaches a client: a thread blocked in the filesystem is killed by the pending SIGKILL the moment
it returns, and one that is not can only report what was durable before the cut.

Control: lines on stdin: ``arm`` (start watching for the trigger), ``cut`` (now), ``sync``
(everything durable, as a clean shutdown's ``sync``), ``release``. Lines on stdout: ``ready``,
``armed``, ``cut <cause>``, ``synced``, ``released``.

Triggers (``--trigger``) cut from inside the filesystem when it sees an operation of interest,
before the ``--countdown``-th mutating operation counted from the first matching one (1: before
the matching operation itself):

- ``snapshot``: an operation on a temporary file (``.tmp-`` in its name), as the file backend's
  snapshot rewrite and journal reset do (temp file, fsync, rename, fsync of the directory);
- ``lmdb-grow``: a write of an LMDB meta page (``data.mdb``, first two pages) that records a
  larger map size: the commit that carries a map growth;
- ``checkpoint``: a write to a SQLite main database file (``*.sqlite3``): in WAL mode only a
  checkpoint writes it;
- ``fsync``: an fsync of a file (with countdown 1: the cut comes after the writes that fsync was
  to make durable, which is when a torn write can happen: a journal line, LMDB's pages, WAL
  frames).

Mutating operations on files whose durability does not matter (LMDB's ``lock.mdb``, SQLite's
``-shm``, both rebuilt at open and mmap'd, so the kernel writes them back when it likes) are not
counted. No ``direct_io``: LMDB and SQLite mmap their files (SQLite's ``-shm`` shared and
writable), which FUSE supports only through the page cache; writes still reach this process at
once (FUSE's page cache is write-through unless ``writeback_cache`` is asked for).
"""

from __future__ import annotations

import argparse
import errno
import os
import pickle
import random
import stat
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from fuse import FUSE, FuseOSError, Operations

SECTOR = 512
PAGE = 4096
ROOT_INO = 1
LMDB_META_MAGIC = 0xBEEFC0DE
#: LMDB's meta: page header (16 bytes on 64-bit), then magic u32, version u32, address u64, mapsize.
LMDB_MAPSIZE_AT = 16 + 4 + 4 + 8
VOLATILE_SUFFIXES = ("lock.mdb", "-shm")
MUTATING = frozenset({"write", "truncate", "create", "mkdir", "unlink", "rmdir", "rename",
                      "fsync", "fsyncdir"})


@dataclass
class Node:
    ino: int
    mode: int
    data: bytearray | None = None  # files: what programs see now
    durable: bytearray | None = None  # files: what survives a cut
    dirty_pages: set[int] = field(default_factory=set)
    entries: dict[str, int] | None = None  # directories: now
    durable_entries: dict[str, int] | None = None  # directories: what survives a cut
    # the last unsynced write: offset, the bytes written, the bytes it replaced, the size before
    last_write: tuple[int, bytes, bytes, int] | None = None
    mtime_ns: int = 0
    open_count: int = 0

    @property
    def is_dir(self) -> bool:
        return self.entries is not None


@dataclass
class Trigger:
    kind: str
    countdown: int
    enabled: bool = False  # by the controller's ``arm``, once it verified the store
    armed: bool = False
    desc: str = ""


class PowerFS(Operations):
    use_ns = True
    flag_nullpath_ok = 1  # operations on an open, unlinked file come with no path

    def __init__(self, image: dict[str, Any] | None, trigger: Trigger | None, tear: bool,
                 image_path: str, rng: random.Random) -> None:
        self.mutex = threading.Lock()
        self.nodes: dict[int, Node] = {}
        self.fhs: dict[int, tuple[Node, int]] = {}  # fh -> node, open flags
        self.next_fh = 1
        self.trigger = trigger
        self.tear = tear
        self.image_path = image_path
        self.rng = rng
        self.cut_done = False
        self.released = threading.Event()
        self.last_written: Node | None = None  # the node of the last unsynced write
        self.lmdb_mapsize = 0  # the largest map size any LMDB meta page recorded so far
        now = time.time_ns()
        if image is None:
            self.next_ino = ROOT_INO + 1
            self.nodes[ROOT_INO] = Node(ROOT_INO, stat.S_IFDIR | 0o755, entries={},
                                        durable_entries={}, mtime_ns=now)
        else:
            self.next_ino = image["next_ino"]
            for ino, (kind, mode, content) in image["nodes"].items():
                if kind == "d":
                    self.nodes[ino] = Node(ino, mode, entries=dict(content),
                                           durable_entries=dict(content), mtime_ns=now)
                else:
                    self.nodes[ino] = Node(ino, mode, data=bytearray(content),
                                           durable=bytearray(content), mtime_ns=now)
                    self._note_lmdb_meta(self.nodes[ino], content[: 2 * PAGE], 0)

    # -- the cut -----------------------------------------------------------------------------
    def cut(self, cause: str) -> bool:
        """Take the durable image and freeze; the caller holds the lock. False if cut already."""
        if self.cut_done:
            return False
        self.cut_done = True
        image = self._durable_image()
        tmp = f"{self.image_path}.tmp"
        with open(tmp, "wb") as f:
            pickle.dump(image, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, self.image_path)
        print(f"cut {cause}{image.pop('torn', '')}", flush=True)
        return True

    def _durable_image(self) -> dict[str, Any]:
        nodes: dict[int, tuple[str, int, Any]] = {}
        stack = [ROOT_INO]
        while stack:
            ino = stack.pop()
            if ino in nodes or ino not in self.nodes:
                continue
            node = self.nodes[ino]
            if node.is_dir:
                assert node.durable_entries is not None
                nodes[ino] = ("d", node.mode, dict(node.durable_entries))
                stack.extend(node.durable_entries.values())
            else:
                assert node.durable is not None
                nodes[ino] = ("f", node.mode, bytes(node.durable))
        image: dict[str, Any] = {"next_ino": self.next_ino, "nodes": nodes}
        victim = self.last_written
        if self.tear and victim is not None and victim.ino in nodes \
                and victim.last_write is not None:
            image["torn"] = self._tear(victim, nodes)
        return image

    def _tear(self, node: Node, nodes: dict[int, tuple[str, int, Any]]) -> str:
        assert node.last_write is not None and node.data is not None and node.durable is not None
        offset, new, old, old_size = node.last_write
        cuts = [0] + [b - offset for b in range((offset // SECTOR + 1) * SECTOR,
                                                 offset + len(new), SECTOR)]
        keep = self.rng.choice(cuts)
        if self.rng.random() < 0.5:
            # the writes before it reached the disk in order; this one only its first sectors
            content = bytearray(node.data)
            del content[old_size:]
            content.extend(b"\0" * (old_size - len(content)))
            content[offset + keep: offset + len(old)] = old[keep:]
            if len(content) < offset + keep:
                content.extend(b"\0" * (offset + keep - len(content)))
            content[offset: offset + keep] = new[:keep]
            how = "after the writes before it"
        else:
            # no unsynced write of this file reached the disk but the first sectors of this one
            content = bytearray(node.durable)
            if keep and len(content) < offset:
                content.extend(b"\0" * (offset - len(content)))
            content[offset: offset + keep] = new[:keep]
            how = "alone"
        nodes[node.ino] = ("f", node.mode, bytes(content))
        return f" (torn: {keep} of {len(new)} bytes at {offset} of inode {node.ino}, {how})"

    def _frozen(self) -> None:
        """After a cut: wait for the controller's release, then fail (the caller holds no lock)."""
        self.released.wait()
        raise FuseOSError(errno.EIO)

    def _enter(self, op: str, node: Node | None = None, name: str = "",
               match: bool = False) -> None:
        """Called under the lock before every operation: freeze after a cut, count a trigger."""
        if self.cut_done:
            self.mutex.release()
            try:
                self._frozen()
            finally:
                self.mutex.acquire()
        trig = self.trigger
        if trig is None or not trig.enabled or op not in MUTATING \
                or name.endswith(VOLATILE_SUFFIXES):
            return
        if not trig.armed and match:
            trig.armed = True
            trig.desc = f"{op} {name}"
        if trig.armed:
            trig.countdown -= 1
            if trig.countdown <= 0:
                self.cut(f"trigger {trig.kind} at {op} {name} (armed by {trig.desc})")
                self.mutex.release()
                try:
                    self._frozen()
                finally:
                    self.mutex.acquire()

    # -- paths -------------------------------------------------------------------------------
    def _lookup(self, path: str) -> Node:
        node = self.nodes[ROOT_INO]
        for part in path.split("/"):
            if not part:
                continue
            if node.entries is None or part not in node.entries:
                raise FuseOSError(errno.ENOENT if node.is_dir else errno.ENOTDIR)
            node = self.nodes[node.entries[part]]
        return node

    def _parent(self, path: str) -> tuple[Node, str]:
        head, name = os.path.split(path.rstrip("/"))
        parent = self._lookup(head or "/")
        if not parent.is_dir:
            raise FuseOSError(errno.ENOTDIR)
        return parent, name

    def _node(self, path: str | None, fh: int | None) -> Node:
        if fh is not None and fh in self.fhs:
            return self.fhs[fh][0]
        if path is None:
            raise FuseOSError(errno.EBADF)
        return self._lookup(path)

    def _new(self, mode: int, is_dir: bool) -> Node:
        ino, self.next_ino = self.next_ino, self.next_ino + 1
        now = time.time_ns()
        if is_dir:
            node = Node(ino, mode, entries={}, durable_entries={}, mtime_ns=now)
        else:
            node = Node(ino, mode, data=bytearray(), durable=bytearray(), mtime_ns=now)
        self.nodes[ino] = node
        return node

    def _open_fh(self, node: Node, flags: int) -> int:
        fh, self.next_fh = self.next_fh, self.next_fh + 1
        self.fhs[fh] = (node, flags)
        node.open_count += 1
        return fh

    def _maybe_free(self, ino: int) -> None:
        """Forget a node that no name, durable name or open file refers to."""
        node = self.nodes.get(ino)
        if node is None or node.open_count or ino == ROOT_INO:
            return
        for other in self.nodes.values():
            if other.is_dir and (ino in other.entries.values()  # type: ignore[union-attr]
                                 or ino in other.durable_entries.values()):  # type: ignore[union-attr]
                return
        if self.last_written is node:
            self.last_written = None
        del self.nodes[ino]

    # -- syncing -----------------------------------------------------------------------------
    def _sync_file(self, node: Node) -> None:
        assert node.data is not None and node.durable is not None
        size = len(node.data)
        del node.durable[size:]
        if len(node.durable) < size:
            node.durable.extend(b"\0" * (size - len(node.durable)))
        for page in node.dirty_pages:
            start = page * PAGE
            if start < size:
                node.durable[start: start + PAGE] = node.data[start: start + PAGE]
        node.dirty_pages.clear()
        node.last_write = None
        if self.last_written is node:
            self.last_written = None

    def _sync_all(self) -> None:
        for node in self.nodes.values():
            if node.is_dir:
                node.durable_entries = dict(node.entries)  # type: ignore[arg-type]
            else:
                self._sync_file(node)

    def _note_lmdb_meta(self, node: Node, data: bytes, offset: int) -> bool:
        """Whether this write to a meta page of data.mdb records a larger map size."""
        grew = False
        for page_at in (0, PAGE):
            at = page_at + LMDB_MAPSIZE_AT
            if offset <= at and at + 8 <= offset + len(data) and \
                    (offset > page_at + 16 or struct.unpack_from(
                        "<I", data, page_at + 16 - offset)[0] == LMDB_META_MAGIC):
                mapsize = struct.unpack_from("<Q", data, at - offset)[0]
                if mapsize > self.lmdb_mapsize:
                    grew = self.lmdb_mapsize > 0
                    self.lmdb_mapsize = mapsize
        return grew

    # -- operations --------------------------------------------------------------------------
    def init(self, path: str) -> None:
        print("ready", flush=True)

    def getattr(self, path: str | None, fh: int | None = None) -> dict[str, Any]:
        with self.mutex:
            self._enter("getattr")
            node = self._node(path, fh)
            size = 0 if node.is_dir else len(node.data)  # type: ignore[arg-type]
            return {"st_mode": node.mode, "st_ino": node.ino, "st_nlink": 2 if node.is_dir else 1,
                    "st_size": size, "st_blocks": (size + SECTOR - 1) // SECTOR,
                    "st_blksize": PAGE, "st_uid": os.getuid(), "st_gid": os.getgid(),
                    "st_atime": node.mtime_ns, "st_mtime": node.mtime_ns,
                    "st_ctime": node.mtime_ns}

    def readdir(self, path: str, fh: int) -> list[str]:
        with self.mutex:
            self._enter("readdir")
            node = self._lookup(path)
            return [".", "..", *node.entries]  # type: ignore[misc]

    def statfs(self, path: str) -> dict[str, int]:
        blocks = 1 << 24
        return {"f_bsize": PAGE, "f_frsize": PAGE, "f_blocks": blocks, "f_bfree": blocks,
                "f_bavail": blocks, "f_files": 1 << 20, "f_ffree": 1 << 20, "f_namemax": 255}

    def open(self, path: str, flags: int) -> int:
        with self.mutex:
            self._enter("open")
            node = self._lookup(path)
            if node.is_dir and flags & os.O_ACCMODE != os.O_RDONLY:
                raise FuseOSError(errno.EISDIR)
            return self._open_fh(node, flags)

    def create(self, path: str, mode: int, fi: Any = None) -> int:
        with self.mutex:
            parent, name = self._parent(path)
            self._enter("create", parent, name, self._matches_name(name))
            if name in parent.entries:  # type: ignore[operator]
                node = self.nodes[parent.entries[name]]  # type: ignore[index]
            else:
                node = self._new(stat.S_IFREG | (mode & 0o7777), False)
                parent.entries[name] = node.ino  # type: ignore[index]
                parent.mtime_ns = node.mtime_ns
            return self._open_fh(node, os.O_RDWR)

    def read(self, path: str | None, size: int, offset: int, fh: int) -> bytes:
        with self.mutex:
            self._enter("read")
            node = self._node(path, fh)
            return bytes(node.data[offset: offset + size])  # type: ignore[index]

    def write(self, path: str | None, data: bytes, offset: int, fh: int) -> int:
        with self.mutex:
            node, flags = self.fhs[fh]
            name = path or ""
            match = self._matches_name(name)
            if self.trigger is not None and self.trigger.kind == "lmdb-grow" \
                    and name.endswith("data.mdb") and offset < 2 * PAGE:
                match = self._note_lmdb_meta(node, data, offset)
            elif self.trigger is not None and self.trigger.kind == "checkpoint":
                match = name.endswith(".sqlite3")
            self._enter("write", node, name, match)
            buf = node.data
            assert buf is not None
            old_size = len(buf)
            old = bytes(buf[offset: offset + len(data)])
            if offset > old_size:
                buf.extend(b"\0" * (offset - old_size))
            buf[offset: offset + len(data)] = data
            if data:
                node.dirty_pages.update(range(offset // PAGE, (offset + len(data) - 1) // PAGE + 1))
            node.mtime_ns = time.time_ns()
            node.last_write = (offset, bytes(data), old, old_size)
            self.last_written = node
            if flags & (os.O_SYNC | os.O_DSYNC):
                self._sync_file(node)
            return len(data)

    def truncate(self, path: str | None, length: int, fh: int | None = None) -> None:
        with self.mutex:
            node = self._node(path, fh)
            self._enter("truncate", node, path or "", self._matches_name(path or ""))
            buf = node.data
            if buf is None:
                raise FuseOSError(errno.EISDIR)
            old_size = len(buf)
            if length < old_size:
                del buf[length:]
            else:
                buf.extend(b"\0" * (length - old_size))
            low, high = sorted((old_size, length))
            node.dirty_pages.update(range(low // PAGE, high // PAGE + 1))
            node.last_write = None
            if self.last_written is node:
                self.last_written = None
            node.mtime_ns = time.time_ns()

    def fsync(self, path: str | None, datasync: int, fh: int) -> None:
        with self.mutex:
            node = self._node(path, fh)
            trig = self.trigger
            match = self._matches_name(path or "") or (trig is not None and trig.kind == "fsync")
            self._enter("fsync", node, path or "", match)
            if not node.is_dir:
                self._sync_file(node)

    def fsyncdir(self, path: str | None, datasync: int, fh: int) -> None:
        with self.mutex:
            self._enter("fsyncdir", None, path or "", False)
            if path is None:
                return
            node = self._lookup(path)
            node.durable_entries = dict(node.entries)  # type: ignore[arg-type]

    def flush(self, path: str | None, fh: int) -> None:
        with self.mutex:
            self._enter("flush")

    def release(self, path: str | None, fh: int) -> None:
        with self.mutex:
            entry = self.fhs.pop(fh, None)
            if entry is not None:
                entry[0].open_count -= 1
                self._maybe_free(entry[0].ino)

    def mkdir(self, path: str, mode: int) -> None:
        with self.mutex:
            parent, name = self._parent(path)
            self._enter("mkdir", parent, name, False)
            if name in parent.entries:  # type: ignore[operator]
                raise FuseOSError(errno.EEXIST)
            node = self._new(stat.S_IFDIR | (mode & 0o7777), True)
            parent.entries[name] = node.ino  # type: ignore[index]

    def unlink(self, path: str) -> None:
        with self.mutex:
            parent, name = self._parent(path)
            self._enter("unlink", parent, name, self._matches_name(name))
            ino = parent.entries.pop(name, None)  # type: ignore[union-attr]
            if ino is None:
                raise FuseOSError(errno.ENOENT)
            self._maybe_free(ino)

    def rmdir(self, path: str) -> None:
        with self.mutex:
            parent, name = self._parent(path)
            self._enter("rmdir", parent, name, False)
            node = self._lookup(path)
            if node.entries:
                raise FuseOSError(errno.ENOTEMPTY)
            del parent.entries[name]  # type: ignore[union-attr]
            self._maybe_free(node.ino)

    def rename(self, old: str, new: str) -> None:
        with self.mutex:
            src, src_name = self._parent(old)
            dst, dst_name = self._parent(new)
            self._enter("rename", src, f"{src_name} -> {dst_name}",
                        self._matches_name(src_name) or self._matches_name(dst_name))
            if src_name not in src.entries:  # type: ignore[operator]
                raise FuseOSError(errno.ENOENT)
            ino = src.entries.pop(src_name)  # type: ignore[union-attr]
            replaced = dst.entries.get(dst_name)  # type: ignore[union-attr]
            dst.entries[dst_name] = ino  # type: ignore[index]
            if replaced is not None and replaced != ino:
                self._maybe_free(replaced)

    def chmod(self, path: str, mode: int) -> None:
        with self.mutex:
            self._enter("chmod")
            node = self._lookup(path)
            node.mode = (node.mode & ~0o7777) | (mode & 0o7777)

    def chown(self, path: str, uid: int, gid: int) -> None:
        with self.mutex:
            self._enter("chown")

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> None:
        with self.mutex:
            self._enter("utimens")
            self._lookup(path).mtime_ns = times[1] if times else time.time_ns()

    def link(self, target: str, source: str) -> None:
        raise FuseOSError(errno.EPERM)

    def symlink(self, target: str, source: str) -> None:
        raise FuseOSError(errno.EPERM)

    def _matches_name(self, name: str) -> bool:
        trig = self.trigger
        return trig is not None and trig.kind == "snapshot" and ".tmp-" in name

    # -- control -----------------------------------------------------------------------------
    def control(self) -> None:
        for line in sys.stdin:
            command = line.strip()
            if command == "cut":
                with self.mutex:
                    if not self.cut("on request"):
                        print("cut already", flush=True)
            elif command == "sync":
                with self.mutex:
                    self._sync_all()
                print("synced", flush=True)
            elif command == "arm":
                with self.mutex:
                    if self.trigger is not None:
                        self.trigger.enabled = True
                print("armed", flush=True)
            elif command == "release":
                self.released.set()
                print("released", flush=True)


def load_image(path: str) -> dict[str, Any] | None:
    if not os.path.exists(path):
        return None
    with open(path, "rb") as f:
        image: dict[str, Any] = pickle.load(f)
    return image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.powerfs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mountpoint")
    parser.add_argument("image", help="the durable image: read at mount, written at a cut")
    parser.add_argument("--trigger", choices=("snapshot", "lmdb-grow", "checkpoint", "fsync"))
    parser.add_argument("--countdown", type=int, default=1)
    parser.add_argument("--tear", action="store_true",
                        help="tear the last unsynced write at a 512-byte boundary at the cut")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    trigger = Trigger(args.trigger, args.countdown) if args.trigger else None
    fs = PowerFS(load_image(args.image), trigger, args.tear, args.image,
                 random.Random(args.seed))
    threading.Thread(target=fs.control, daemon=True).start()
    # use_ino: programs compare inode numbers (the file backend detects a replaced journal so);
    # hard_remove: an unlinked open file stays reachable by its handle, without a hidden rename.
    FUSE(fs, args.mountpoint, foreground=True, nothreads=False, use_ino=True, hard_remove=True,
         big_writes=True, fsname="powerfs", subtype="powerfs")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The S3 sink: lands a topic-partition's log in a bucket as the S3 sink connector does.

Objects are ``sink_layout.object_key(topic, partition, start offset)`` and hold the record values
of consecutive offsets, one JSON document per line. A file is committed when it holds
``flush_size`` records, or when it has been open ``rotate_interval_ms`` (wall clock, counted from
its first record), or at shutdown.

Landing order: the connector commits one partition's files one after another, in offset order, so
a file is visible only once every lower-offset file of its partition is. The readers rely on it:
the mount's listing, the new-objects sensor and the landing watcher list a partition from the last
key they saw (S3 ``StartAfter``), and a lower key landing later would never be read; the broker
also takes the end of the last key as the end of what landed. So this sink makes a partition's
files visible strictly in offset order. On S3 the PUT is the moment an object becomes visible,
and no cheaper request can defer it, so a partition's files are PUT one at a time (partitions and
topics land in parallel, each on its own thread). In a local-directory bucket the rename is that
moment: the files of a batch are written and synced in parallel to hidden names beside their
keys, which no listing shows, and renamed to their keys in offset order as each one is ready.
A directory listing is not a snapshot, though: one that overlaps renames may return a later key
without an earlier one (POSIX leaves entries added during a readdir unspecified), so a reader of a
directory must list twice and keep only the keys up to the greatest of the first listing.

Exactly once: file boundaries depend only on persisted state. A full file spans ``[landed,
landed + flush_size)``; before a partial file is uploaded its end is persisted as ``landing_end``.
After each upload ``landed`` moves to the file's end. A crash between the upload and that write
makes recovery upload the same key with the same bytes again: an invisible overwrite, never a
second copy.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pintrest_assets.bucket import Bucket, LocalBucket
from pintrest_assets.files import write_atomically
from pintrest_assets.kafka.log import PartitionLog, fsync_dir
from pintrest_assets.kafka.sink_layout import object_key

log = logging.getLogger(__name__)

_RETRY_FIRST_S = 0.2
_RETRY_MAX_S = 10.0
_FILES_PER_UPLOAD = 8  # full files landed before the mark moves; a local bucket writes them in parallel


@dataclass
class SinkMark:
    """What has landed: every offset below ``landed``, and the end of a partial file in flight."""

    path: Path
    landed: int = 0
    landing_end: int | None = None

    @classmethod
    def load(cls, path: Path) -> SinkMark:
        if not path.exists():
            return cls(path)
        state = json.loads(path.read_text())
        return cls(path, int(state["landed"]), state.get("landing_end"))

    def save(self, fsync: bool) -> None:
        mark = json.dumps({"landed": self.landed, "landing_end": self.landing_end})
        write_atomically(self.path, mark.encode(), fsync=fsync)
        if fsync:
            fsync_dir(self.path.parent)


class PartitionSink:
    """A thread landing one topic-partition's log; ``wake`` after each append."""

    def __init__(
        self,
        topic: str,
        partition: int,
        plog: PartitionLog,
        mark: SinkMark,
        bucket: Bucket,
        flush_size: int,
        rotate_interval_ms: int,
        fsync: bool = True,
    ):
        self.topic = topic
        self.partition = partition
        self.log = plog
        self.mark = mark
        self.bucket = bucket
        self.flush_size = flush_size
        self.rotate_interval_s = rotate_interval_ms / 1000
        self.fsync = fsync
        self.objects_landed = 0
        self.last_error: str | None = None
        self._cond = threading.Condition()
        # When the open (not yet committed) file got its first record; None when nothing is pending.
        self._opened_at: float | None = time.monotonic() if self.pending else None
        self._stop_by: float | None = None  # monotonic deadline once a stop is requested
        self._thread = threading.Thread(target=self._run, name=f"sink-{topic}-{partition}", daemon=True)
        self._writers = ThreadPoolExecutor(_FILES_PER_UPLOAD, thread_name_prefix=f"write-{topic}-{partition}")

    @property
    def pending(self) -> int:
        """Records acknowledged but not landed yet."""
        return self.log.next_offset - self.mark.landed

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        with self._cond:
            if self._opened_at is None:
                self._opened_at = time.monotonic()
            self._cond.notify()

    def stop(self, timeout: float) -> None:
        """Ask the thread to land everything pending, partial file included, retrying for up to
        ``timeout`` seconds, then to end; ``join`` waits for it."""
        with self._cond:
            self._stop_by = time.monotonic() + timeout
            self._cond.notify()

    def join(self) -> None:
        self._thread.join()
        self._writers.shutdown()

    def _run(self) -> None:
        retry_in = _RETRY_FIRST_S
        while True:
            with self._cond:
                while not self._due():
                    if not self.pending:  # the next record opens a new file
                        self._opened_at = None
                    self._cond.wait(self._seconds_to_rotation())
                stopping = self._stop_by is not None
            try:
                self._land(everything=stopping or self._rotation_due())
                self.last_error, retry_in = None, _RETRY_FIRST_S
            except Exception as exc:  # noqa: BLE001 - the bucket is unreachable or refuses: keep the log, retry
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("landing %s failed (retrying in %.1fs): %s", self.topic, retry_in, self.last_error)
                if stopping and time.monotonic() + retry_in > self._stop_by:
                    log.error("%s: %d records not landed; they land on the next start", self.topic, self.pending)
                    return
                with self._cond:  # a stop request cuts the wait short
                    self._cond.wait(retry_in)
                retry_in = min(retry_in * 2, _RETRY_MAX_S)
                continue
            if stopping:
                return

    def _due(self) -> bool:
        return (
            self._stop_by is not None
            or self.mark.landing_end is not None
            or self.pending >= self.flush_size
            or self._rotation_due()
        )

    def _rotation_due(self) -> bool:
        seconds = self._seconds_to_rotation()  # None between an append and its wake()
        return seconds is not None and seconds <= 0 and self.pending > 0

    def _seconds_to_rotation(self) -> float | None:
        if self._opened_at is None:
            return None
        return self._opened_at + self.rotate_interval_s - time.monotonic()

    def _land(self, everything: bool) -> None:
        """Commit every full file, and with ``everything`` the partial one too."""
        if self.mark.landing_end is not None:  # a partial file was in flight at a crash: redo it
            self._upload([min(self.mark.landing_end, self.log.next_offset)])
        end = self.log.next_offset
        while end - self.mark.landed >= self.flush_size:
            count = min((end - self.mark.landed) // self.flush_size, _FILES_PER_UPLOAD)
            self._upload([self.mark.landed + self.flush_size * (i + 1) for i in range(count)])
        if everything and end > self.mark.landed:
            self.mark.landing_end = end
            self.mark.save(self.fsync)
            self._upload([end])
        with self._cond:
            self._opened_at = time.monotonic() if self.pending else None

    def _upload(self, ends: list[int]) -> None:
        """Land consecutive files, the first starting at the mark, then move the mark past them.

        A failure part way leaves the files before it landed and none after it; the mark has not
        moved, so the same files, with the same boundaries, are landed again.
        """
        starts = [self.mark.landed, *ends[:-1]]
        objects = [
            (object_key(self.topic, self.partition, start), self.log.read(start, end))
            for start, end in zip(starts, ends)
            if end > start
        ]
        if isinstance(self.bucket, LocalBucket) and len(objects) > 1:
            self._write_then_rename_in_order(self.bucket.root, objects)
        else:
            for key, data in objects:
                self.bucket.put(key, data)
                self.objects_landed += 1
        end = ends[-1]
        self.mark.landed, self.mark.landing_end = end, None
        # Losing this write in a power cut only means uploading the same full files again (their
        # boundaries follow from an earlier mark; a partial file's end was synced before its
        # upload), so it is synced only before log segments it covers are deleted.
        self.mark.save(fsync=self.fsync and self.log.first_segment_end() <= end)
        self.log.discard_below(end)

    def _write_then_rename_in_order(self, root: Path, objects: list[tuple[str, bytes]]) -> None:
        """``LocalBucket.put`` of each object, the writes in parallel and the renames that make
        them visible in the objects' order."""
        paths = [root / key for key, _ in objects]
        staged: list[Future[str]] = [
            self._writers.submit(_write_beside, p, data) for p, (_, data) in zip(paths, objects)
        ]
        renamed = 0
        try:
            for path, written in zip(paths, staged):
                os.replace(written.result(), path)
                renamed += 1
                self.objects_landed += 1
        finally:
            for written in staged[renamed:]:  # after a failure: remove what was written but not renamed
                if not written.cancel() and written.exception() is None:
                    Path(written.result()).unlink(missing_ok=True)


def _write_beside(path: Path, data: bytes) -> str:
    """Writes and syncs ``data`` to a new hidden file beside ``path`` (which listings skip), as
    ``write_atomically`` does before its rename; returns the file's name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp

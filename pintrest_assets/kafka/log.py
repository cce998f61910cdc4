"""The write-ahead log of one topic-partition: every record the gateway has acknowledged.

A record is stored as the line the sink will land (compact JSON value + ``\\n``), so a record's
offset is its line number in the log and a sink object is a byte range of it, copied as is.
The log is split into segment files named by the offset of their first record, as Kafka names
them (``00000000000000000042.log``); a segment is deleted once every record in it has landed.

An append is written (and, with ``fsync``, synced) before its offsets are returned, and only
then is the record acknowledged. A crash can leave a torn last line: an append that never
returned, so never acknowledged; recovery cuts it off.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

log = logging.getLogger(__name__)

SEGMENT_BYTES = 64 * 1024 * 1024
_READ_BLOCK = 1024 * 1024


class PartitionLog:
    """An append-only, segmented log of newline-terminated records.

    ``append`` may be called from many threads; ``read`` and ``discard_below`` from one (the sink).
    """

    def __init__(self, directory: Path, fsync: bool = True, start_offset: int = 0, segment_bytes: int = SEGMENT_BYTES):
        self.dir = Path(directory)
        self.fsync = fsync
        self.segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._cursor: tuple[int, int, int] | None = None  # (offset, segment base, byte position)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._segments = sorted(int(p.stem) for p in self.dir.glob("*.log") if p.stem.isdigit())
        if not self._segments:
            self._create_segment(start_offset)
        self._next_offset, self._active_size = self._recover_active_segment()
        if self._next_offset < start_offset:
            # Records up to start_offset have landed but the log lost them (unsynced writes and a
            # power cut): continue numbering after them rather than reuse their offsets.
            log.warning(
                "%s ends at offset %d but records up to %d have landed; continuing from %d",
                self.dir,
                self._next_offset,
                start_offset,
                start_offset,
            )
            self._create_segment(start_offset)
            self._next_offset, self._active_size = start_offset, 0
        self._fd = os.open(self._segment_path(self._segments[-1]), os.O_WRONLY | os.O_APPEND)

    @property
    def next_offset(self) -> int:
        """The offset the next record will get; every record below it is in the log."""
        return self._next_offset

    def append(self, lines: list[bytes]) -> int:
        """Write the lines as consecutive records; returns the first one's offset."""
        data = b"".join(lines)
        with self._lock:
            if self._fd < 0:
                raise OSError(f"the log in {self.dir} is closed")
            if self._active_size >= self.segment_bytes:
                self._roll()
            try:
                _write_all(self._fd, data)
                if self.fsync:
                    os.fdatasync(self._fd)
            except OSError:
                self._undo_partial_write()
                raise
            first = self._next_offset
            self._next_offset += len(lines)
            self._active_size += len(data)
            return first

    def read(self, start: int, end: int) -> bytes:
        """The lines of offsets ``[start, end)``, ``end <= next_offset``, as stored."""
        if not 0 <= start <= end <= self._next_offset:
            raise ValueError(f"cannot read [{start}, {end}) from a log ending at {self._next_offset}")
        if self._cursor is None or self._cursor[0] != start:
            self._cursor = self._locate(start)
        offset, base, pos = self._cursor
        parts = []
        while offset < end:
            with open(self._segment_path(base), "rb") as f:
                f.seek(pos)
                data, count = _read_lines(f, end - offset)
            parts.append(data)
            offset += count
            pos += len(data)
            if offset < end:  # this segment is exhausted: the rest is in the next one
                base, pos = self._segment_after(base), 0
        self._cursor = (offset, base, pos)
        return b"".join(parts)

    def first_segment_end(self) -> float:
        """The offset after the oldest segment's records (infinite while it is the active one)."""
        with self._lock:
            return self._segments[1] if len(self._segments) > 1 else float("inf")

    def discard_below(self, offset: int) -> None:
        """Delete the segments whose records all lie below ``offset`` (they have landed)."""
        with self._lock:
            while len(self._segments) > 1 and self._segments[1] <= offset:
                base = self._segments.pop(0)
                self._segment_path(base).unlink(missing_ok=True)
                if self._cursor is not None and self._cursor[1] == base:
                    self._cursor = None

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def _undo_partial_write(self) -> None:
        # Leave no partial batch behind: its records were never acknowledged, and the next
        # append must start at a line boundary for offsets to stay line numbers.
        try:
            os.ftruncate(self._fd, self._active_size)
        except OSError:
            log.exception("%s: cannot undo a failed write; refusing appends until a restart recovers the log", self.dir)
            os.close(self._fd)
            self._fd = -1

    def _segment_path(self, base: int) -> Path:
        return self.dir / f"{base:020d}.log"

    def _create_segment(self, base: int) -> None:
        self._segment_path(base).touch()
        if self.fsync:
            fsync_dir(self.dir)
        self._segments.append(base)

    def _roll(self) -> None:
        os.close(self._fd)
        self._create_segment(self._next_offset)
        self._fd = os.open(self._segment_path(self._next_offset), os.O_WRONLY | os.O_APPEND)
        self._active_size = 0

    def _segment_after(self, base: int) -> int:
        with self._lock:
            later = [b for b in self._segments if b > base]
        if not later:
            raise RuntimeError(f"{self.dir}: records missing after segment {base}")
        return later[0]

    def _recover_active_segment(self) -> tuple[int, int]:
        base = self._segments[-1]
        path = self._segment_path(base)
        data = path.read_bytes()
        complete = data.rfind(b"\n") + 1
        if complete < len(data):
            log.warning("%s: discarding a torn last record (%d bytes, never acknowledged)", path, len(data) - complete)
            with open(path, "r+b") as f:
                f.truncate(complete)
                f.flush()
                os.fsync(f.fileno())
        return base + data.count(b"\n", 0, complete), complete

    def _locate(self, offset: int) -> tuple[int, int, int]:
        with self._lock:
            base = max(b for b in self._segments if b <= offset)
        with open(self._segment_path(base), "rb") as f:
            skipped, count = _read_lines(f, offset - base)
        if count != offset - base:
            raise RuntimeError(f"{self.dir}: offset {offset} is missing from segment {base}")
        return offset, base, len(skipped)


def _read_lines(f, count: int) -> tuple[bytes, int]:
    """Up to ``count`` whole lines from the file's position, and how many there were."""
    parts, found = [], 0
    while found < count:
        block = f.read(_READ_BLOCK)
        if not block:
            break
        in_block = block.count(b"\n")
        if found + in_block >= count:
            cut = -1
            for _ in range(count - found):
                cut = block.index(b"\n", cut + 1)
            parts.append(block[: cut + 1])
            found = count
        else:
            parts.append(block)
            found += in_block
    data = b"".join(parts)
    # A block can end inside a line that a concurrent append is still writing: keep whole lines.
    return data[: data.rfind(b"\n") + 1], found


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_dir(directory: Path) -> None:
    """Make the creation, deletion or renaming of the directory's entries durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

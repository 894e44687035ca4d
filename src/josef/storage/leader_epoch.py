"""The leader epoch cache of one partition: which leader epoch began at which offset.

Persisted as Kafka's `leader-epoch-checkpoint` ("0", count, then "epoch startOffset" lines)
and rewritten whenever it changes (rare: once per leader change or truncation).
Followers use it through OffsetForLeaderEpoch to find where their log diverged.
"""
from __future__ import annotations

import bisect
from pathlib import Path

from josef.storage.checkpoint import CorruptCheckpoint, read_checkpoint, write_checkpoint

FILE_NAME = "leader-epoch-checkpoint"
UNDEFINED = (-1, -1)


class LeaderEpochCache:
    def __init__(self, path: Path):
        self.path = path
        self._epochs: list[int] = []  # ascending, parallel to _starts
        self._starts: list[int] = []
        try:
            entries = read_checkpoint(path, 2)
        except CorruptCheckpoint:
            entries = []  # rebuilt going forward; Kafka likewise treats it as lost
        for epoch, start in entries:
            self._epochs.append(int(epoch))
            self._starts.append(int(start))

    @property
    def latest_epoch(self) -> int:
        return self._epochs[-1] if self._epochs else -1

    @property
    def latest_start_offset(self) -> int:
        """The offset where the latest epoch began; 0 when no epoch is known."""
        return self._starts[-1] if self._starts else 0

    def entries(self) -> list[tuple[int, int]]:
        return list(zip(self._epochs, self._starts))

    def assign(self, epoch: int, start_offset: int) -> None:
        """Record that `epoch` starts at `start_offset`, dropping entries it contradicts."""
        if epoch < 0 or start_offset < 0:
            return
        if self._epochs and epoch == self._epochs[-1] and start_offset >= self._starts[-1]:
            return
        # Epochs and start offsets must both increase: a new entry overrides any not below it.
        keep = len(self._epochs)
        while keep and (self._epochs[keep - 1] >= epoch or self._starts[keep - 1] >= start_offset):
            keep -= 1
        del self._epochs[keep:], self._starts[keep:]
        self._epochs.append(epoch)
        self._starts.append(start_offset)
        self._write()

    def end_offset_for(self, epoch: int, log_end_offset: int) -> tuple[int, int]:
        """Kafka's OffsetForLeaderEpoch answer: (largest known epoch <= `epoch`, where the next epoch begins)."""
        if epoch < 0 or not self._epochs:
            return UNDEFINED
        if epoch == self._epochs[-1]:
            return epoch, log_end_offset
        higher = bisect.bisect_right(self._epochs, epoch)
        if higher == len(self._epochs):
            return UNDEFINED  # newer than anything we know
        if higher == 0:
            return epoch, self._starts[0]  # older than everything kept: data before is gone
        return self._epochs[higher - 1], self._starts[higher]

    def epoch_for_offset(self, offset: int) -> int:
        """The epoch in which `offset` was written, -1 if unknown."""
        i = bisect.bisect_right(self._starts, offset)
        return self._epochs[i - 1] if i else -1

    def truncate_from_end(self, end_offset: int) -> None:
        """Forget epochs starting at or after `end_offset` (the log was truncated there)."""
        keep = bisect.bisect_left(self._starts, end_offset)
        if keep < len(self._starts):
            del self._epochs[keep:], self._starts[keep:]
            self._write()

    def truncate_from_start(self, start_offset: int) -> None:
        """The log now starts at `start_offset`: the epoch covering it starts there."""
        covering = bisect.bisect_right(self._starts, start_offset)
        if covering == 0 or (covering == 1 and self._starts[0] == start_offset):
            return
        del self._epochs[:covering - 1], self._starts[:covering - 1]
        self._starts[0] = start_offset
        self._write()

    def clear(self) -> None:
        self._epochs.clear()
        self._starts.clear()
        self._write()

    def _write(self) -> None:
        write_checkpoint(self.path, zip(self._epochs, self._starts))

"""Kafka's checkpoint text files: a version line ("0"), a count line, then one entry per line.

Used for `leader-epoch-checkpoint` ("epoch startOffset") in a partition directory and for
`recovery-point-offset-checkpoint`, `log-start-offset-checkpoint` and
`replication-offset-checkpoint` ("topic partition offset") at the root of a data directory.
Writes go to a temporary file that is fsynced and renamed over the old one, so a crash leaves
either the old or the new checkpoint, never a torn one.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

VERSION = 0


class CorruptCheckpoint(Exception):
    pass


def write_checkpoint(path: Path, entries: Iterable[Sequence[object]]) -> None:
    lines = [" ".join(str(field) for field in entry) for entry in entries]
    write_atomically(path, f"{VERSION}\n{len(lines)}\n" + "".join(line + "\n" for line in lines))


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text`: a crash leaves the old or the new file, never a torn one."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def read_checkpoint(path: Path, fields: int) -> list[list[str]]:
    """The entries of a checkpoint file (each split into `fields` strings); [] if it does not exist."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    lines = text.splitlines()
    if len(lines) < 2 or lines[0].strip() != str(VERSION):
        raise CorruptCheckpoint(f"{path}: unrecognised version line")
    try:
        count = int(lines[1])
    except ValueError:
        raise CorruptCheckpoint(f"{path}: bad entry count {lines[1]!r}") from None
    entries = [line.split() for line in lines[2:] if line.strip()]
    if count != len(entries) or any(len(e) != fields for e in entries):
        raise CorruptCheckpoint(f"{path}: expected {count} entries of {fields} fields")
    return entries


def fsync_dir(path: Path) -> None:
    """Make a rename or file creation inside `path` durable."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories
    finally:
        os.close(fd)

"""kafka-dump-log.sh (DumpLogSegments): print log segments and their indexes.

josef's segment files have Kafka's formats, so the output is Kafka's too:
  .log        concatenated RecordBatch v2
  .index      8-byte entries: int32 offset relative to the segment's base, int32 file position
  .timeindex  12-byte entries: int64 timestamp, int32 relative offset
  .txnindex   34-byte aborted-transaction entries
Index files may be preallocated with zeros: as in Kafka, a zero entry after the first ends them.
"""
from __future__ import annotations

import mmap
import os
import struct
import sys
from contextlib import contextmanager

from josef.cli.common import ArgParser, ToolError, run

TIMESTAMP_TYPES = ("CreateTime", "LogAppendTime")
DELETE_HORIZON_FLAG = 0x40
_INDEX_ENTRY = struct.Struct(">ii")
_TIME_ENTRY = struct.Struct(">qi")
_TXN_ENTRY = struct.Struct(">hqqqq")
STRING_DECODERS = ("StringDecoder", "DefaultDecoder")


def parser() -> ArgParser:
    p = ArgParser("kafka-dump-log.sh", "This tool helps to parse a log file and dump its contents to the console, "
                                       "useful for debugging a seemingly corrupt log segment.")
    p.add_argument("--files", metavar="FILE1,FILE2,...",
                   help="REQUIRED: The comma separated list of data and index log files to be dumped.")
    p.add_argument("--print-data-log", action="store_true", help="Print the messages' content.")
    p.add_argument("--deep-iteration", action="store_true", help="Iterate records, not only batches.")
    p.add_argument("--verify-index-only", action="store_true", help="Only verify the index, print nothing of it.")
    p.add_argument("--index-sanity-check", action="store_true", help="Only check the index sanity.")
    p.add_argument("--max-message-size", type=int, default=5 * 1024 * 1024, help="Size of largest message.")
    p.add_argument("--max-bytes", type=int, default=2**31 - 1, help="Read at most this many bytes of .log files.")
    p.add_argument("--skip-record-metadata", action="store_true", help="Skip printing metadata for each record.")
    p.add_argument("--key-decoder-class", nargs="?", const="StringDecoder", help="Only string decoding is available.")
    p.add_argument("--value-decoder-class", nargs="?", const="StringDecoder", help="Only string decoding is available.")
    for unsupported in ("offsets-decoder", "transaction-log-decoder", "cluster-metadata-decoder",
                        "remote-log-metadata-decoder"):
        p.add_argument(f"--{unsupported}", action="store_true", help="Not available.")
    return p


def main(argv: list[str]) -> int:
    return run(_main, argv)


def _main(argv: list[str]) -> int:
    args = parser().parse(argv)
    if not args.files:
        raise ToolError('Missing required argument "[files]"')
    for flag in ("offsets_decoder", "transaction_log_decoder", "cluster_metadata_decoder", "remote_log_metadata_decoder"):
        if getattr(args, flag):
            raise ToolError(f"--{flag.replace('_', '-')} is not available in josef")
    for decoder in (args.key_decoder_class, args.value_decoder_class):
        if decoder and decoder.rsplit(".", 1)[-1] not in STRING_DECODERS:
            raise ToolError(f"Decoder {decoder} is not available; only StringDecoder is")
    print_data = bool(args.print_data_log or args.key_decoder_class or args.value_decoder_class)
    dumper = Dumper(print_data=print_data, deep=args.deep_iteration or print_data,
                    skip_metadata=args.skip_record_metadata, verify_only=args.verify_index_only,
                    sanity_only=args.index_sanity_check, max_bytes=args.max_bytes)
    for path in args.files.split(","):
        dumper.dump(path)
    dumper.report()
    return 0


@contextmanager
def mapped(path: str):
    """The file's bytes, memory-mapped (segments can be a GiB); b'' for an empty file."""
    try:
        f = open(path, "rb")
    except OSError as e:
        raise ToolError(f"cannot open {path}: {e.strerror or e}") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            yield b""
            return
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            yield m


def base_offset_of(path: str) -> int:
    name = os.path.basename(path).split(".")[0]
    try:
        return int(name)
    except ValueError:
        raise ToolError(f"{path}: a segment file name must be its base offset, e.g. 00000000000000000000.log") from None


def sibling(path: str, suffix: str) -> str:
    return os.path.join(os.path.dirname(path), os.path.basename(path).split(".")[0] + suffix)


class Dumper:
    def __init__(self, print_data: bool, deep: bool, skip_metadata: bool, verify_only: bool,
                 sanity_only: bool, max_bytes: int):
        self.print_data, self.deep, self.skip_metadata = print_data, deep, skip_metadata
        self.verify_only, self.sanity_only, self.max_bytes = verify_only, sanity_only, max_bytes
        self.index_mismatches: dict[str, list[tuple[int, int]]] = {}
        self.time_mismatches: dict[str, list[tuple[int, int]]] = {}
        self.time_out_of_order: dict[str, list[tuple[int, int]]] = {}
        self.time_not_found: dict[str, list[tuple[int, int]]] = {}
        self.non_consecutive: dict[str, list[tuple[int, int]]] = {}
        self.out = sys.stdout

    def dump(self, path: str) -> None:
        self.out.write(f"Dumping {path}\n")
        suffix = os.path.splitext(path)[1]
        handler = {".log": self.dump_log, ".index": self.dump_index, ".timeindex": self.dump_time_index,
                   ".txnindex": self.dump_txn_index}.get(suffix)
        if handler is None:
            self.out.flush()
            print(f"Ignoring unknown file {path}", file=sys.stderr)
            return
        handler(path)

    # -- .log ----------------------------------------------------------------------------------

    def dump_log(self, path: str) -> None:
        from josef.records.batch import InvalidRecord, crc_ok, iter_batches
        self.out.write(f"Log starting offset: {base_offset_of(path)}\n")
        with mapped(path) as buf:
            limit = min(len(buf), self.max_bytes)
            view = buf[:limit] if limit < len(buf) else buf
            valid = 0
            last_offset = -1
            try:
                for pos, header in iter_batches(view):
                    self.out.write(batch_line(header, pos, crc_ok(view, pos, header)) + "\n")
                    if self.deep:
                        last_offset = self.dump_records(path, bytes(view[pos:pos + header.size]), header, last_offset)
                    valid = pos + header.size
            except InvalidRecord:
                pass  # a damaged batch ends the dump; the bytes from it on count as invalid
            trailing = len(view) - valid
            if trailing > 0 and self.max_bytes == 2**31 - 1:
                self.out.write(f"Found {trailing} invalid bytes at the end of {os.path.basename(path)}\n")

    def dump_records(self, path: str, batch: bytes, header, last_offset: int) -> int:
        from josef.records.batch import InvalidRecord
        from josef.records.records import iter_records
        kind = TIMESTAMP_TYPES[header.is_log_append_time]
        try:
            for record in iter_records(batch):
                if last_offset != -1 and record.offset != last_offset + 1:
                    self.non_consecutive.setdefault(os.path.abspath(path), []).append((last_offset, record.offset))
                last_offset = record.offset
                parts = []
                if not self.skip_metadata:
                    parts.append(f"| offset: {record.offset} {kind}: {record.timestamp} "
                                 f"keySize: {_size(record.key)} valueSize: {_size(record.value)}")
                    delta = record.offset - header.base_offset
                    sequence = -1 if header.base_sequence < 0 else (header.base_sequence + delta) & 0x7FFFFFFF
                    parts.append(f" sequence: {sequence} headerKeys: [{','.join(k for k, _ in record.headers)}]")
                    if header.is_control:
                        parts.append(" " + control_text(record))
                prefix = " " if parts else "| "
                if self.print_data and not header.is_control:
                    if record.key is not None:
                        parts.append(f"{prefix}key: {_text(record.key)}")
                    if record.value is not None:
                        parts.append(f" payload: {_text(record.value)}")
                self.out.write("".join(parts) + "\n")
        except InvalidRecord as e:
            self.out.write(f"| corrupt records: {e}\n")
        return last_offset

    # -- indexes -------------------------------------------------------------------------------

    def dump_index(self, path: str) -> None:
        base = base_offset_of(path)
        with mapped(path) as buf:
            count = len(buf) // _INDEX_ENTRY.size
            if count == 0:
                self.out.write(f"{path} is empty.\n")
                return
            entries = []
            for i in range(count):
                relative, position = _INDEX_ENTRY.unpack_from(buf, i * _INDEX_ENTRY.size)
                if relative == 0 and i > 0:
                    break  # preallocated tail
                entries.append((base + relative, position))
        if self.sanity_only:
            self._index_sanity(path, entries)
            return
        batches = self._batches_by_position(sibling(path, ".log"))
        for offset, position in entries:
            last = batches.get(position) if batches is not None else offset
            if last is not None and last != offset:
                self.index_mismatches.setdefault(os.path.abspath(path), []).append((offset, last))
            if not self.verify_only:
                self.out.write(f"offset: {offset} position: {position}\n")

    def _index_sanity(self, path: str, entries) -> None:
        for (o1, p1), (o2, p2) in zip(entries, entries[1:]):
            if o2 <= o1 or p2 <= p1:
                raise ToolError(f"Corrupt index found, index file ({path}) has non-increasing entries "
                                f"(offset {o1} position {p1} then offset {o2} position {p2})")
        self.out.write(f"{path} passed sanity check.\n")

    def dump_time_index(self, path: str) -> None:
        base = base_offset_of(path)
        with mapped(path) as buf:
            entries = []
            for i in range(len(buf) // _TIME_ENTRY.size):
                timestamp, relative = _TIME_ENTRY.unpack_from(buf, i * _TIME_ENTRY.size)
                if relative == 0 and i > 0:
                    break
                entries.append((timestamp, base + relative))
        if self.sanity_only:
            for (t1, o1), (t2, o2) in zip(entries, entries[1:]):
                if t2 < t1 or o2 < o1:
                    raise ToolError(f"Corrupt time index found, time index file ({path}) has non-increasing entries")
            self.out.write(f"{path} passed sanity check.\n")
            return
        batches = self._batches_by_last_offset(sibling(path, ".log"))
        previous = -1
        key = os.path.abspath(path)
        for timestamp, offset in entries:
            if batches is not None:
                found = next(((last, max_ts) for last, max_ts in batches if last >= offset), None)
                if found is None:
                    self.time_not_found.setdefault(key, []).append((offset, -1))
                elif found[0] != offset:
                    self.time_not_found.setdefault(key, []).append((offset, found[0]))
                else:
                    if found[1] != timestamp:
                        self.time_mismatches.setdefault(key, []).append((timestamp, found[1]))
                    if previous >= timestamp:
                        self.time_out_of_order.setdefault(key, []).append((timestamp, previous))
            if not self.verify_only:
                self.out.write(f"timestamp: {timestamp} offset: {offset}\n")
            previous = timestamp

    def dump_txn_index(self, path: str) -> None:
        with mapped(path) as buf:
            for i in range(len(buf) // _TXN_ENTRY.size):
                version, pid, first, last, lso = _TXN_ENTRY.unpack_from(buf, i * _TXN_ENTRY.size)
                self.out.write(f"version: {version} producerId: {pid} firstOffset: {first} "
                               f"lastOffset: {last} lastStableOffset: {lso}\n")

    def _batches(self, log_path: str):
        """(position, header) of the log's batches, or None when there is no log to check against."""
        from josef.records.batch import InvalidRecord, iter_batches
        if not os.path.exists(log_path):
            return None
        with mapped(log_path) as buf:
            found = []
            try:
                for pos, header in iter_batches(buf):
                    found.append((pos, header))
            except InvalidRecord:
                pass
        return found

    def _batches_by_position(self, log_path: str):
        batches = self._batches(log_path)
        return None if batches is None else {pos: h.last_offset for pos, h in batches}

    def _batches_by_last_offset(self, log_path: str):
        batches = self._batches(log_path)
        return None if batches is None else [(h.last_offset, h.max_timestamp) for _, h in batches]

    # -- summary on stderr, as Kafka prints it ---------------------------------------------------

    def report(self) -> None:
        self.out.flush()
        err = sys.stderr
        for name, pairs in self.index_mismatches.items():
            print(f"Mismatches in :{name}", file=err)
            for index_offset, log_offset in pairs:
                print(f"  Index offset: {index_offset}, log offset: {log_offset}", file=err)
        for name, pairs in self.time_mismatches.items():
            print(f"Found timestamp mismatch in :{name}", file=err)
            for index_ts, log_ts in pairs:
                print(f"  Index timestamp: {index_ts}, log timestamp: {log_ts}", file=err)
        for name, pairs in self.time_out_of_order.items():
            print(f"Found out of order timestamp in :{name}", file=err)
            for index_ts, previous in pairs:
                print(f"  Index timestamp: {index_ts}, Previously indexed timestamp: {previous}", file=err)
        for pairs in self.time_not_found.values():
            print("The following indexed offsets are not found in the log.", file=err)
            for indexed, found in pairs:
                print(f"Indexed offset: {indexed}, found log offset: {found}", file=err)
        for name, pairs in self.non_consecutive.items():
            print(f"Non-consecutive offsets in {name}", file=err)
            for first, second in pairs:
                print(f"  {first} is followed by {second}", file=err)


def batch_line(header, position: int, valid: bool) -> str:
    from josef.records.compression import CODEC_NAMES
    horizon = f"OptionalLong[{header.base_timestamp}]" if header.attributes & DELETE_HORIZON_FLAG else "OptionalLong.empty"
    return (f"baseOffset: {header.base_offset} lastOffset: {header.last_offset} count: {header.record_count} "
            f"baseSequence: {header.base_sequence} lastSequence: {header.last_sequence} "
            f"producerId: {header.producer_id} producerEpoch: {header.producer_epoch} "
            f"partitionLeaderEpoch: {header.partition_leader_epoch} isTransactional: {_bool(header.is_transactional)} "
            f"isControl: {_bool(header.is_control)} deleteHorizonMs: {horizon} position: {position} "
            f"{TIMESTAMP_TYPES[header.is_log_append_time]}: {header.max_timestamp} size: {header.size} "
            f"magic: {header.magic} compresscodec: {CODEC_NAMES.get(header.compression, 'unknown')} "
            f"crc: {header.crc} isvalid: {_bool(valid)}")


def control_text(record) -> str:
    """Kafka's text for a transaction marker (control record key: version int16, type int16)."""
    if record.key is None or len(record.key) < 4:
        return "controlType: UNKNOWN(-1)"
    type_id = struct.unpack_from(">h", record.key, 2)[0]
    if type_id in (0, 1) and record.value is not None and len(record.value) >= 6:
        epoch = struct.unpack_from(">i", record.value, 2)[0]
        return f"endTxnMarker: {('ABORT', 'COMMIT')[type_id]} coordinatorEpoch: {epoch}"
    names = {2: "LEADER_CHANGE", 3: "SNAPSHOT_HEADER", 4: "SNAPSHOT_FOOTER", 5: "KRAFT_VERSION", 6: "KRAFT_VOTERS"}
    return f"controlType: {names.get(type_id, 'UNKNOWN')}({type_id})"


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _size(data) -> int:
    return -1 if data is None else len(data)


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")

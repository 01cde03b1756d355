"""The run's bag: a rosbag2-compatible MCAP file (no rclpy here; the recorder node feeds it).

`BagWriter` writes CDR-serialised ROS 2 messages into `<bag dir>/<name>_<i>.mcap` with the
`ros2` profile, `ros2msg` schemas (the message definition with every definition it uses
appended, as rosbag2 writes them) and `cdr` message encoding, beside a rosbag2
`metadata.yaml`, so `ros2 bag info/play` and Foxglove open the directory as it is.

Crash safety: messages go into zstd-compressed chunks of at most `chunk_size` bytes (and at
most `chunk_period_s` old); each chunk is flushed to the file as soon as it is complete, so a
killed process leaves a file that `read_bag` (mcap's stream reader) reads up to the last
complete chunk. `close()` writes the summary and footer.
"""

from __future__ import annotations

import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

import yaml
from mcap.reader import make_reader
from mcap.records import Channel, Message, Schema
from mcap.stream_reader import StreamReader
from mcap.writer import CompressionType, Writer

PROFILE = "ros2"
SCHEMA_ENCODING = "ros2msg"
MESSAGE_ENCODING = "cdr"
ROS_DISTRO = "jazzy"
ROSBAG2_VERSION = 8  # metadata.yaml version that Jazzy's rosbag2 writes and reads
SEPARATOR = "=" * 80
DEFAULT_CHUNK_SIZE = 256 * 1024
PRIMITIVES = frozenset("bool byte char float32 float64 int8 uint8 int16 uint16 int32 uint32 int64 uint64 "
                       "string wstring".split())


class DefinitionError(LookupError):
    pass


# ---------------------------------------------------------------------- message definitions
def _interface_prefixes() -> list[Path]:
    """Install prefixes whose share/<package>/msg holds .msg files (ament index order)."""
    prefixes = [Path(p) for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    return prefixes + [Path(sys.prefix)]


def _msg_file(package: str, name: str, prefixes: Iterable[Path]) -> Path:
    for prefix in prefixes:
        path = prefix / "share" / package / "msg" / f"{name}.msg"
        if path.is_file():
            return path
    raise DefinitionError(f"no {package}/msg/{name}.msg under share/ of {[str(p) for p in prefixes]}")


def _split_type(type_name: str) -> tuple[str, str]:
    parts = type_name.split("/")
    if len(parts) == 3 and parts[1] == "msg":
        return parts[0], parts[2]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise DefinitionError(f"message type {type_name!r}: expected package/msg/Name")


def _field_types(text: str, package: str) -> list[tuple[str, str]]:
    """(package, name) of each non-primitive field type in one .msg text."""
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        token = line.split()[0]
        if "=" in re.sub(r"<=\d+", "", line):
            continue  # a constant: primitive by definition
        base = re.sub(r"<=\d+", "", re.sub(r"\[.*\]$", "", token))
        if base in PRIMITIVES:
            continue
        if "/" in base:
            out.append(_split_type(base))
        elif base == "Header":
            out.append(("std_msgs", "Header"))
        else:
            out.append((package, base))
    return out


def message_definition(type_name: str, prefixes: Optional[Iterable[Path]] = None) -> str:
    """The full ros2msg definition of `type_name` ('pkg/msg/Name'): its .msg text, then each
    message type it uses (depth first, each once) after a separator line and `MSG: pkg/Name`."""
    prefixes = list(prefixes) if prefixes is not None else _interface_prefixes()
    package, name = _split_type(type_name)
    main = _msg_file(package, name, prefixes).read_text()
    parts, seen = [main.rstrip("\n")], {(package, name)}
    stack = list(reversed(_field_types(main, package)))
    while stack:
        dep = stack.pop()
        if dep in seen:
            continue
        seen.add(dep)
        text = _msg_file(dep[0], dep[1], prefixes).read_text()
        parts.append(f"{SEPARATOR}\nMSG: {dep[0]}/{dep[1]}\n{text.rstrip(chr(10))}")
        stack.extend(reversed(_field_types(text, dep[0])))
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------------- writing
@dataclass
class _Topic:
    name: str
    type: str
    channel_id: int
    qos: str
    count: int = 0


class BagWriter:
    """One rosbag2-compatible MCAP bag directory (see the module docstring)."""

    def __init__(self, bag_dir: str | Path, *, chunk_size: int = DEFAULT_CHUNK_SIZE, chunk_period_s: float = 2.0,
                 metadata_period_s: float = 5.0, compression: str = "zstd",
                 definition: Callable[[str], str] = message_definition,
                 clock: Callable[[], int] = time.time_ns) -> None:
        self.dir = Path(bag_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        index = 0
        while (self.dir / f"{self.dir.name}_{index}.mcap").exists():
            index += 1  # a resumed run adds a file; the bag lists them all
        self.path = self.dir / f"{self.dir.name}_{index}.mcap"
        self.chunk_period_s, self.metadata_period_s = chunk_period_s, metadata_period_s
        self._definition, self._clock = definition, clock
        self._file = open(self.path, "wb")
        codec = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4, "none": CompressionType.NONE}[compression]
        self._compression = "" if compression == "none" else compression
        self._writer = Writer(self._file, chunk_size=chunk_size, compression=codec)
        self._writer.start(profile=PROFILE, library="porl_ros")
        self._file.flush()
        self._schemas: dict[str, int] = {}
        self.topics: dict[str, _Topic] = {}
        self.first_ns: Optional[int] = None
        self.last_ns: Optional[int] = None
        self.messages = 0
        self.bytes_in = 0
        self._written = self._file.tell()
        self._chunk_started = time.monotonic()
        self._metadata_written = 0.0
        self.closed = False
        self.write_metadata()

    def add_topic(self, topic: str, type_name: str, qos: str = "") -> None:
        """Declare a topic ('/porl/status', 'porl_ros_interfaces/msg/TrainingStatus'); `qos`:
        rosbag2's offered_qos_profiles YAML ('' lets `ros2 bag play` pick defaults)."""
        if topic in self.topics:
            return
        if type_name not in self._schemas:
            self._schemas[type_name] = self._writer.register_schema(
                name=type_name, encoding=SCHEMA_ENCODING, data=self._definition(type_name).encode())
        channel = self._writer.register_channel(topic=topic, message_encoding=MESSAGE_ENCODING,
                                                schema_id=self._schemas[type_name],
                                                metadata={"offered_qos_profiles": qos})
        self.topics[topic] = _Topic(topic, type_name, channel, qos)

    def write(self, topic: str, data: bytes, log_time_ns: Optional[int] = None,
              publish_time_ns: Optional[int] = None) -> None:
        """Append one CDR-serialised message of a declared topic."""
        entry = self.topics[topic]
        now = self._clock() if log_time_ns is None else log_time_ns
        self._writer.add_message(channel_id=entry.channel_id, log_time=now, data=data,
                                 publish_time=now if publish_time_ns is None else publish_time_ns,
                                 sequence=entry.count)
        entry.count += 1
        self.messages += 1
        self.bytes_in += len(data)
        self.first_ns = now if self.first_ns is None else min(self.first_ns, now)
        self.last_ns = now if self.last_ns is None else max(self.last_ns, now)
        self.tick()

    def tick(self) -> None:
        """Flush a completed chunk to the file; close a chunk older than chunk_period_s; keep
        metadata.yaml fresh. Cheap; called after each message and by the node's timer."""
        if self.closed:
            return
        now = time.monotonic()
        if now - self._chunk_started >= self.chunk_period_s:
            self._end_chunk()
        position = self._file.tell()
        if position != self._written:  # the writer emitted a chunk: make it reach the file now
            self._file.flush()
            self._written = position
            self._chunk_started = now
        if now - self._metadata_written >= self.metadata_period_s:
            self.write_metadata()

    def _end_chunk(self) -> None:
        # mcap's Writer (1.x) has no public "close the current chunk now"; its private
        # __finalize_chunk is what add_message calls once the chunk is full (and a no-op on an
        # empty chunk). Without it a quiet run would keep its messages in memory until
        # chunk_size is reached. If a future mcap drops it, chunks close by size only.
        finalize = getattr(self._writer, "_Writer__finalize_chunk", None)
        if finalize is not None:
            finalize()
        self._chunk_started = time.monotonic()

    def close(self) -> None:
        """Summary + footer (a complete MCAP file) and the final metadata.yaml."""
        if self.closed:
            return
        self._writer.finish()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self.closed = True
        self.write_metadata()

    # -------------------------------------------------------------- metadata.yaml
    def write_metadata(self) -> None:
        """rosbag2's metadata.yaml for every .mcap file of the directory (this writer's
        counts for its own file; an earlier file's from its summary)."""
        files, topics = [], {}
        for path in sorted(self.dir.glob("*.mcap"), key=lambda p: (len(p.name), p.name)):
            if path == self.path:
                counts = {t.name: (t.type, t.qos, t.count) for t in self.topics.values()}
                first, last = self.first_ns or 0, self.last_ns or 0
            else:
                counts, first, last = _summary_counts(path)
            files.append({"path": path.name, "starting_time": {"nanoseconds_since_epoch": first},
                          "duration": {"nanoseconds": max(0, last - first)},
                          "message_count": sum(c for _, _, c in counts.values())})
            for name, (type_name, qos, count) in counts.items():
                entry = topics.setdefault(name, {"topic_metadata": {
                    "name": name, "type": type_name, "serialization_format": MESSAGE_ENCODING,
                    "offered_qos_profiles": qos, "type_description_hash": ""}, "message_count": 0})
                entry["message_count"] += count
        starts = [f["starting_time"]["nanoseconds_since_epoch"] for f in files if f["message_count"]]
        ends = [f["starting_time"]["nanoseconds_since_epoch"] + f["duration"]["nanoseconds"]
                for f in files if f["message_count"]]
        info = {"rosbag2_bagfile_information": {
            "version": ROSBAG2_VERSION, "storage_identifier": "mcap",
            "duration": {"nanoseconds": (max(ends) - min(starts)) if starts else 0},
            "starting_time": {"nanoseconds_since_epoch": min(starts) if starts else 0},
            "message_count": sum(f["message_count"] for f in files),
            "topics_with_message_count": list(topics.values()),
            "compression_format": "", "compression_mode": "",
            "relative_file_paths": [f["path"] for f in files], "files": files,
            "custom_data": {}, "ros_distro": ROS_DISTRO}}
        tmp = self.dir / "metadata.yaml.tmp"
        tmp.write_text(yaml.safe_dump(info, sort_keys=False))
        os.replace(tmp, self.dir / "metadata.yaml")
        self._metadata_written = time.monotonic()


def _summary_counts(path: Path) -> tuple[dict, int, int]:
    counts: dict[str, list] = {}
    first = last = None
    for schema, channel, message in iter_messages(path):
        entry = counts.setdefault(channel.topic, [schema.name if schema else "",
                                                  channel.metadata.get("offered_qos_profiles", ""), 0])
        entry[2] += 1
        first = message.log_time if first is None else min(first, message.log_time)
        last = message.log_time if last is None else max(last, message.log_time)
    return {k: tuple(v) for k, v in counts.items()}, first or 0, last or 0


# ---------------------------------------------------------------------- reading
def bag_files(bag: str | Path) -> list[Path]:
    """The .mcap files of a bag directory (in order), or [bag] for a file."""
    bag = Path(bag)
    if bag.is_file():
        return [bag]
    return sorted(bag.glob("*.mcap"), key=lambda p: (len(p.name), p.name))


def has_summary(path: str | Path) -> bool:
    """True when the file was closed cleanly (footer + summary)."""
    with open(path, "rb") as f:
        try:
            return make_reader(f).get_summary() is not None
        except Exception:  # mcap raises McapError, EndOfFile, struct.error... on a file without footer
            return False


def iter_messages(bag: str | Path, topics: Optional[Iterable[str]] = None
                  ) -> Iterator[tuple[Optional[Schema], Channel, Message]]:
    """Every message of a bag directory or file, in file order, also from a file that has no
    footer (a killed recorder): read as a stream up to the last complete record."""
    wanted = set(topics) if topics is not None else None
    for path in bag_files(bag):
        schemas: dict[int, Schema] = {}
        channels: dict[int, Channel] = {}
        with open(path, "rb") as f:
            records = StreamReader(f, skip_magic=False).records
            while True:
                try:
                    record = next(records)
                except StopIteration:
                    break
                except Exception:  # a truncated tail (McapError, EndOfFile, zstd errors): the chunk never finished
                    break
                if isinstance(record, Schema):
                    schemas[record.id] = record
                elif isinstance(record, Channel):
                    channels[record.id] = record
                elif isinstance(record, Message):
                    channel = channels.get(record.channel_id)
                    if channel is None or (wanted is not None and channel.topic not in wanted):
                        continue
                    yield schemas.get(channel.schema_id), channel, record


def read_messages(bag: str | Path, topics: Optional[Iterable[str]] = None) -> Iterator[tuple[str, int, object]]:
    """(topic, log time ns, decoded message) for each message (mcap_ros2's decoder: plain
    Python objects with the message's fields, no ROS install needed)."""
    from mcap_ros2.decoder import DecoderFactory

    factory = DecoderFactory()
    decoders: dict[int, Callable] = {}
    for schema, channel, message in iter_messages(bag, topics):
        if channel.id not in decoders:
            decoders[channel.id] = factory.decoder_for(channel.message_encoding, schema)
        yield channel.topic, message.log_time, decoders[channel.id](message.data)

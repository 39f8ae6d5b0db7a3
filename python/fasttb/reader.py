"""``fasttb.SummaryReader``: event files read back at native speed, as tbparse reads them.

The records of every file are checked (length and data CRC32C) and their Events decoded by the
native core (``csrc/reader/reader.cc``) with the interpreter's lock released, several files at once.
Plain scalars come back as numpy columns; histograms, images, audio and tensors as byte ranges
that are decoded only when their kind is asked for. What a file contributes follows tensorboard's
EventAccumulator, which tbparse reads through (its purge rules included), and the DataFrames are
built as tbparse 0.0.9 builds them: the same columns, dtypes, row order and values.

pandas is imported only by the DataFrame API; ``columns()`` gives numpy arrays without it.
Images need Pillow to be decoded; audio is decoded by the standard library.
"""

from __future__ import annotations

import errno
import io
import os
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union

import numpy as np

from . import _core
from ._convert import require

SCALARS, TENSORS, HISTOGRAMS, IMAGES, AUDIO, HPARAMS, TEXT = (
    "scalars", "tensors", "histograms", "images", "audio", "hparams", "text")
ALL_EVENT_TYPES = {SCALARS, TENSORS, HISTOGRAMS, IMAGES, AUDIO, HPARAMS, TEXT}
ALL_EXTRA_COLUMNS = {"dir_name", "file_name", "wall_time", "min", "max", "num", "sum", "sum_squares",
                     "width", "height", "content_type", "length_frames", "sample_rate"}
_TEXT_SUFFIX = "/text_summary"
_SESSION_START_TAG = "_hparams_/session_start_info"
_KIND = {HISTOGRAMS: 5, IMAGES: 4, AUDIO: 6, TENSORS: 8, TEXT: 8}
_TENSOR_KIND = 8

PathLike = Union[str, "os.PathLike[str]"]


class CorruptRecordError(ValueError):
    """A record of an event file failed its CRC32C check or is not an Event. ``path`` and
    ``offset`` (the record's first byte) say where."""

    def __init__(self, path: str, offset: int, what: str) -> None:
        super().__init__(f"{path}: byte {offset}: {what}")
        self.path = path
        self.offset = offset


class CorruptRecordWarning(UserWarning):
    """A corrupt record was skipped (``skip_corrupt=True``)."""


def is_summary_events_file(path: str) -> bool:
    """Whether TensorBoard reads ``path`` as an event file of summaries (by its name)."""
    name = os.path.basename(path)
    return "tfevents" in name and not name.endswith(".profile-empty")


# -- where the files are --------------------------------------------------------------------------


class LocalFiles:
    """This machine's files."""

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def isfile(self, path: str) -> bool:
        return os.path.isfile(path)

    def listdir(self, path: str) -> List[str]:
        return sorted(os.listdir(path))

    def join(self, path: str, name: str) -> str:
        return os.path.join(path, name)

    def size(self, path: str) -> int:
        try:
            return os.path.getsize(path)
        except OSError:
            return 0

    def read(self, path: str) -> Any:
        """The file's bytes: read, or mapped (no copy) when very large. Either slices to bytes."""
        return self.read_with_identity(path)[0]

    def read_with_identity(self, path: str) -> Tuple[Any, Tuple[int, int]]:
        """The file's bytes, and its device and inode as they were when read. Files of
        ``MAP_BYTES`` or more are mapped: one cut short in place while it is scanned would end
        the process with SIGBUS, so smaller ones, the rule, are read."""
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            identity = (st.st_dev, st.st_ino)
            if st.st_size >= MAP_BYTES:
                import mmap

                try:
                    return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ), identity
                except (OSError, ValueError):
                    pass
            return f.read(), identity

    def read_ranges(self, path: str, identity: Tuple[int, int], size: int,
                    ranges: Sequence[Tuple[int, int]]) -> List[bytes]:
        """The bytes at ``(offset, length)`` of a file read earlier, read again. Raises OSError
        if it is no longer that file, or was cut short since."""
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if (st.st_dev, st.st_ino) != identity:
                raise OSError(errno.ESTALE, f"{path}: the event file was replaced since it was read; "
                              "read it again", path)
            out = [os.pread(f.fileno(), length, offset) if st.st_size >= size else b""
                   for offset, length in ranges]
            if st.st_size < size or any(len(b) != length for b, (_, length) in zip(out, ranges)):
                raise OSError(errno.ESTALE, f"{path}: the event file was cut short since it was read; "
                              "read it again", path)
            return out


# Local files this large or larger are mapped, not read (see LocalFiles.read_with_identity).
MAP_BYTES = 256 << 20


class RemoteFiles:
    """Files behind an fsspec URL (``s3://``, ``gs://``, ``memory://``, ...): listed once per
    directory, each event file read whole into memory."""

    def __init__(self, url: str, storage_options: Optional[Dict[str, Any]]) -> None:
        try:
            import fsspec
        except ImportError:
            raise ImportError(f"log_path {url!r}: reading remote logs needs fsspec (pip install fsspec, "
                              "and the protocol's package, e.g. s3fs for s3://)") from None
        if storage_options is not None and not isinstance(storage_options, dict):
            raise TypeError(f"storage_options: expected a dict, got {type(storage_options).__name__}")
        self.fs, _ = fsspec.core.url_to_fs(url, **(storage_options or {}))
        # fsspec keeps one file system object per URL and options, listings cached: a new reader
        # of a run still being written must see the files uploaded since the last one.
        self.fs.invalidate_cache()
        self.protocol = url.split("://", 1)[0]
        self._kinds: Dict[str, str] = {}

    def _key(self, path: str) -> str:
        return self.fs._strip_protocol(path).rstrip("/")

    def exists(self, path: str) -> bool:
        return bool(self.fs.exists(path))

    def isfile(self, path: str) -> bool:
        key = self._key(path)
        if key not in self._kinds:
            self._kinds[key] = "file" if self.fs.isfile(path) else "directory"
        return self._kinds[key] == "file"

    def listdir(self, path: str) -> List[str]:
        names = []
        for entry in self.fs.ls(path, detail=True):
            key = self._key(entry["name"])
            self._kinds[key] = "file" if entry.get("type") == "file" else "directory"
            names.append(key.rsplit("/", 1)[-1])
        return sorted(names)

    def join(self, path: str, name: str) -> str:
        return path.rstrip("/") + "/" + name

    def size(self, path: str) -> int:
        try:
            return int(self.fs.size(path) or 0)
        except (OSError, ValueError):
            return 0

    def read(self, path: str) -> Any:
        return self.fs.cat_file(path)


def files_for(path: str, storage_options: Optional[Dict[str, Any]] = None) -> Any:
    """The file system ``path`` is on: fsspec's for URLs (``file://`` too), this machine's otherwise."""
    if "://" in path:
        return RemoteFiles(path, storage_options)
    if storage_options:
        raise ValueError("storage_options: only for remote log paths (a URL such as s3://bucket/run)")
    return LocalFiles()


_LOCAL = LocalFiles()


# -- one file ------------------------------------------------------------------------------------


class EventFile:
    """One event file, scanned: its scalars as numpy columns, its other values as byte ranges,
    the first metadata of each tag, and EventAccumulator's purges already applied."""

    def __init__(self, path: str, data: Any, scan: Dict[str, Any],
                 identity: Optional[Tuple[int, int]] = None) -> None:
        self.path = path
        # A local file (`identity`: its device and inode when read) is not kept: a reader of a
        # large tree held every file's bytes, or its mapping and a descriptor, as long as it
        # lived. values() reads the payloads it needs again. Remote files' bytes are kept.
        self._identity = identity
        self.data: Any = None if identity is not None else data
        self.tags: List[str] = scan["tags"]
        self.events: int = scan["events"]
        self.graphs: int = scan["graphs"]
        self.run_metadata: int = scan["run_metadata"]
        self.bytes: int = scan["bytes"]
        self.size = len(data)
        self.truncated_at: Optional[int] = scan["truncated_at"]
        self.skipped: List[int] = list(scan["skipped"])
        self.error: Optional[str] = scan["error"]
        self.error_at: int = scan["error_at"]

        def col(name: str, dtype: Any) -> np.ndarray:
            return np.frombuffer(scan[name], dtype=dtype)

        s_event, s_step = col("scalar_event", np.int64), col("scalar_step", np.int64)
        s_tag = col("scalar_tag", np.int32)
        v_event, v_step = col("value_event", np.int64), col("value_step", np.int64)
        v_tag, v_kind = col("value_tag", np.int32), col("value_kind", np.uint8)
        # Tag order per kind: first appearance, purged or not (EventAccumulator keeps the keys).
        self.scalar_tags = col("scalar_tag_order", np.int32).tolist()
        order_kind, order = col("value_tag_order_kind", np.int32), col("value_tag_order", np.int32)
        self.value_tags = {kind: order[order_kind == kind].tolist() for kind in (4, 5, 6, 8)}
        keep_s = np.ones(len(s_event), dtype=bool)
        keep_v = np.ones(len(v_event), dtype=bool)
        purge_event, purge_step = col("purge_event", np.int64), col("purge_step", np.int64)
        purge_all = col("purge_all", np.uint8)
        begin, end = col("purge_tags_begin", np.uint32), col("purge_tags_end", np.uint32)
        purge_tags = col("purge_tag_list", np.int32)
        for i in range(len(purge_event)):
            expired_s = (s_event < purge_event[i]) & (s_step >= purge_step[i])
            # EventAccumulator never purges tensors (text, PR curves, hparams...): only scalars,
            # histograms, images and audio.
            expired_v = (v_event < purge_event[i]) & (v_step >= purge_step[i]) & (v_kind != _TENSOR_KIND)
            if not purge_all[i]:
                tags = purge_tags[begin[i]:end[i]]
                expired_s &= np.isin(s_tag, tags)
                expired_v &= np.isin(v_tag, tags)
            keep_s &= ~expired_s
            keep_v &= ~expired_v
        self.scalar_step = s_step[keep_s]
        self.scalar_wall_time = col("scalar_wall_time", np.float64)[keep_s]
        self.scalar_value = col("scalar_value", np.float32)[keep_s].astype(np.float64)
        self.scalar_tag = s_tag[keep_s]
        self.value_step = v_step[keep_v]
        self.value_wall_time = col("value_wall_time", np.float64)[keep_v]
        self.value_tag = v_tag[keep_v]
        self.value_kind = v_kind[keep_v]
        self.value_offset = col("value_offset", np.uint64)[keep_v]
        self.value_length = col("value_length", np.uint64)[keep_v]
        self.metadata: Dict[str, bytes] = {}
        for tag, offset, length in zip(col("metadata_tag", np.int32), col("metadata_offset", np.uint64),
                                       col("metadata_length", np.uint64)):
            self.metadata[self.tags[tag]] = data[int(offset):int(offset) + int(length)]
        self._plugins: Optional[Dict[str, Dict[str, bytes]]] = None
        self._tag_ids: Optional[Dict[str, int]] = None
        self._rows: Dict[int, Dict[int, np.ndarray]] = {}  # kind: {tag id: value rows in file order}

    @classmethod
    def empty(cls, path: str) -> "EventFile":
        """A file TensorBoard does not read as events (its name says so): nothing in it."""
        return cls(path, b"", _core.scan_events(b""))

    def plugin_contents(self, plugin: str) -> Dict[str, bytes]:
        """{tag: content} of the tags whose first metadata names ``plugin``, in order."""
        if self._plugins is None:
            from . import proto

            self._plugins = {}
            for tag, raw in self.metadata.items():
                meta = proto.SummaryMetadata.FromString(raw)
                name = meta.plugin_data.plugin_name
                if name:
                    self._plugins.setdefault(name, {})[tag] = meta.plugin_data.content
        return self._plugins.get(plugin, {})

    def raw_tags(self, event_type: str) -> List[str]:
        """EventAccumulator's tags of one kind (text: the text plugin's tags, suffix and all)."""
        if event_type == SCALARS:
            return [self.tags[t] for t in self.scalar_tags]
        if event_type == TEXT:
            return list(self.plugin_contents("text"))
        return [self.tags[t] for t in self.value_tags[_KIND[event_type]]]

    def tags_of(self, event_type: str) -> List[str]:
        """tbparse's tags of one kind in this file."""
        if event_type == HPARAMS:
            return list(self._session_start_hparams())
        tags = self.raw_tags(event_type)
        if event_type == TENSORS:
            plugin_tags = set(self.plugin_contents("hparams")) | set(self.plugin_contents("text"))
            tags = [t for t in tags if t not in plugin_tags]
        return tags

    def values(self, event_type: str, tag: str) -> List[Tuple[int, float, bytes]]:
        """(step, wall_time, payload bytes) of the values of one kind under ``tag``."""
        if self._tag_ids is None:
            self._tag_ids = {}
            for i, t in enumerate(self.tags):
                self._tag_ids.setdefault(t, i)
        tag_id = self._tag_ids.get(tag)
        if tag_id is None:
            return []
        rows = self._rows_of(_KIND[event_type]).get(tag_id, ())
        if not len(rows):
            return []
        ranges = [(int(self.value_offset[i]), int(self.value_length[i])) for i in rows]
        if self._identity is not None:
            payloads = _LOCAL.read_ranges(self.path, self._identity, self.size, ranges)
        else:
            payloads = [self.data[offset:offset + length] for offset, length in ranges]
        return [(int(self.value_step[i]), float(self.value_wall_time[i]), payload)
                for i, payload in zip(rows, payloads)]

    def _rows_of(self, kind: int) -> Dict[int, np.ndarray]:
        """The value rows of one kind grouped by tag, made once: looking each tag up in every row
        made reading a file of many tags quadratic."""
        if kind not in self._rows:
            picked = np.flatnonzero(self.value_kind == kind)
            order = np.argsort(self.value_tag[picked], kind="stable")  # stable: file order per tag
            picked = picked[order]
            tags = self.value_tag[picked]
            ids, starts = np.unique(tags, return_index=True)
            ends = np.append(starts[1:], len(tags))
            self._rows[kind] = {int(t): picked[a:b] for t, a, b in zip(ids, starts, ends)}
        return self._rows[kind]

    def _session_start_hparams(self) -> Dict[str, Any]:
        content = self.plugin_contents("hparams").get(_SESSION_START_TAG)
        if content is None:
            return {}
        from . import proto

        start = proto.HParamsPluginData.FromString(content).session_start_info
        out = {}
        for tag in start.hparams.keys():
            fields = start.hparams[tag].ListFields()
            out[tag] = fields[0][1] if fields else None
        return out


def read_event_file(path: str, skip_corrupt: bool = False, scalars: bool = True,
                    values: bool = True, files: Any = _LOCAL) -> EventFile:
    """Reads and scans one event file. A corrupt record raises ``CorruptRecordError`` (or, with
    ``skip_corrupt``, is skipped with a ``CorruptRecordWarning``); a record cut short at the end
    is left out silently, as TensorBoard leaves it until the rest is written."""
    f, skipped = _read_without_warnings(path, skip_corrupt, scalars, values, files)
    _warn_skipped(path, skipped, stacklevel=3)
    return f


def _read_without_warnings(path: str, skip_corrupt: bool, scalars: bool, values: bool,
                           files: Any) -> Tuple[EventFile, List[int]]:
    """read_event_file, returning the offsets of skipped records instead of warning: reader
    threads must not warn (warnings state is process-wide; catching it on threads corrupts it)."""
    identity = None
    if isinstance(files, LocalFiles):
        data, identity = files.read_with_identity(path)
    else:
        data = files.read(path)
    try:
        scan = _core.scan_events(data, scalars, values, skip_corrupt)
        if scan["error"] is not None:
            raise CorruptRecordError(path, scan["error_at"], scan["error"])
        return EventFile(path, data, scan, identity), list(scan["skipped"])
    finally:
        if hasattr(data, "close"):
            data.close()  # a mapping: its pages and its descriptor go now


def _warn_skipped(path: str, skipped: List[int], stacklevel: int) -> None:
    for offset in skipped:
        warnings.warn(f"{path}: byte {offset}: skipped a corrupt record", CorruptRecordWarning,
                      stacklevel=stacklevel + 1)


# -- decoding values -------------------------------------------------------------------------------


_NUMPY_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8, 7: object,
                 8: np.complex64, 9: np.int64, 10: np.bool_, 17: np.uint16, 18: np.complex128, 19: np.float16,
                 22: np.uint32, 23: np.uint64}


def tensor_to_ndarray(tensor: Any) -> np.ndarray:
    """A TensorProto as a numpy array, by the rules tbparse applies (padding short value lists
    with their last value)."""
    shape = [d.size for d in tensor.tensor_shape.dim]
    count = int(np.prod(shape, dtype=np.int64))
    dtype = _NUMPY_DTYPES.get(tensor.dtype)
    if dtype is None:
        raise TypeError(f"tensor: unsupported dtype {tensor.dtype}")
    if tensor.tensor_content:
        return np.frombuffer(tensor.tensor_content, dtype=dtype).copy().reshape(shape)
    if dtype is object:
        strings = list(tensor.string_val)
        if count > len(strings):
            strings.extend([strings[-1] if strings else ""] * (count - len(strings)))
        return np.array(strings, dtype=object).reshape(shape)
    if dtype is np.float16:
        values = np.fromiter(tensor.half_val, dtype=np.uint16).view(np.float16)
    elif dtype is np.float32:
        values = np.fromiter(tensor.float_val, dtype=dtype)
    elif dtype is np.float64:
        values = np.fromiter(tensor.double_val, dtype=dtype)
    elif dtype in (np.int32, np.uint8, np.uint16, np.int16, np.int8):
        values = np.fromiter(tensor.int_val, dtype=dtype)
    elif dtype is np.int64:
        values = np.fromiter(tensor.int64_val, dtype=dtype)
    elif dtype is np.uint32:
        values = np.fromiter(tensor.uint32_val, dtype=dtype)
    elif dtype is np.uint64:
        values = np.fromiter(tensor.uint64_val, dtype=dtype)
    elif dtype in (np.complex64, np.complex128):
        parts = list(tensor.scomplex_val if dtype is np.complex64 else tensor.dcomplex_val)
        values = np.array([complex(a, b) for a, b in zip(parts[0::2], parts[1::2])], dtype=dtype)
    else:
        values = np.fromiter(tensor.bool_val, dtype=dtype)
    if values.size == 0:
        return np.zeros(shape, dtype)
    if values.size != count:
        values = np.pad(values, (0, count - values.size), "edge")
    return values.reshape(shape)


def decode_image(encoded: bytes) -> np.ndarray:
    """PNG/GIF/JPEG bytes as uint8 pixels, shaped as TensorFlow's decode_image shapes them:
    (height, width, channels), or (frames, height, width, 3) for a GIF."""
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("reading images: install Pillow (pip install Pillow)") from None
    with Image.open(io.BytesIO(encoded)) as im:
        if im.format == "GIF":
            frames = []
            for i in range(getattr(im, "n_frames", 1)):
                im.seek(i)
                frames.append(np.asarray(im.convert("RGB")))
            return np.stack(frames)
        converted: Any = im
        if im.mode.startswith("I;16") or (im.format == "PNG" and im.mode == "I"):
            # 16-bit grey: one channel, each sample's high byte (libpng's strip_16, as TensorFlow).
            pixels = (np.asarray(im).astype(np.uint32) >> 8).astype(np.uint8)
            return pixels[:, :, None] if pixels.ndim == 2 else pixels
        if im.mode == "1":
            converted = im.convert("L")  # 1-bit: 0 and 255, not booleans
        elif im.mode in ("P", "CMYK", "YCbCr", "I", "F"):
            converted = im.convert("RGBA" if "transparency" in im.info else "RGB")
        pixels = np.asarray(converted)
        if im.format == "PNG" and im.mode == "RGBA" and _png_colour_type(encoded) == 4:
            pixels = pixels[:, :, [0, 3]]  # 16-bit grey and alpha, which Pillow opens as RGBA
    return pixels[:, :, None] if pixels.ndim == 2 else pixels


def _png_colour_type(encoded: bytes) -> int:
    """The colour type in a PNG's header (0 grey, 2 RGB, 3 palette, 4 grey and alpha, 6 RGBA)."""
    return encoded[25] if len(encoded) > 25 and encoded[12:16] == b"IHDR" else -1


def decode_wav(encoded: bytes) -> Tuple[np.ndarray, int]:
    """16-bit PCM WAV bytes as float32 samples in [-1, 1), (frames, channels), and the rate."""
    import wave

    with wave.open(io.BytesIO(encoded)) as w:
        channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
        frames = w.readframes(w.getnframes())
    if width != 2:
        raise ValueError(f"audio: {8 * width}-bit WAV, only 16-bit PCM is read")
    return (np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0).reshape(-1, channels), rate


# -- the tree ----------------------------------------------------------------------------------------


def _progress(total: int) -> Optional[Callable[[int], None]]:
    """A progress line on stderr for reads of more than 256 MB, when stderr is a terminal."""
    if total < 256 << 20 or not sys.stderr.isatty():
        return None
    done = [0, time.monotonic()]
    lock = threading.Lock()

    def advance(n: int) -> None:
        with lock:
            done[0] += n
            if done[0] >= total or time.monotonic() - done[1] > 0.2:
                done[1] = time.monotonic()
                end = "\n" if done[0] >= total else ""
                sys.stderr.write(f"\rfasttb: read {done[0] / 1e6:,.0f} of {total / 1e6:,.0f} MB{end}")
                sys.stderr.flush()

    return advance


def scan_tree(paths: Sequence[str], skip_corrupt: bool = False, scalars: bool = True,
              values: bool = True, threads: Optional[int] = None, files: Any = _LOCAL) -> List[EventFile]:
    """Reads the event files ``paths`` on several threads (the scans run without the GIL, and
    remote reads wait on the network)."""
    sizes = [files.size(p) for p in paths]
    advance = _progress(sum(sizes))

    def one(i: int) -> Tuple[EventFile, List[int]]:
        result = _read_without_warnings(paths[i], skip_corrupt, scalars, values, files)
        if advance:
            advance(sizes[i])
        return result

    workers = threads or min(8, os.cpu_count() or 1, max(1, len(paths)))
    if workers <= 1 or len(paths) <= 1:
        read = [one(i) for i in range(len(paths))]
    else:
        with ThreadPoolExecutor(workers) as pool:
            read = list(pool.map(one, range(len(paths))))
    for path, (_, skipped) in zip(paths, read):  # warned here, on the caller's thread
        _warn_skipped(path, skipped, stacklevel=3)
    return [f for f, _ in read]


class SummaryReader:
    """Reads every event file under ``log_path`` (a directory, searched recursively, or one event
    file): a drop-in for ``tbparse.SummaryReader``.

    Args:
        log_path: A log directory or an event file.
        pivot: Wide DataFrames (one column per tag) instead of long ones; values of one tag at
            one step are merged into a list.
        extra_columns: Any of ``dir_name``, ``file_name``, ``wall_time``, ``min``, ``max``,
            ``num``, ``sum``, ``sum_squares`` (histograms), ``width``, ``height`` (images),
            ``content_type``, ``length_frames``, ``sample_rate`` (audio).
        event_types: The kinds to read, of ``scalars``, ``tensors``, ``histograms``, ``images``,
            ``audio``, ``hparams``, ``text``; all by default (tbparse reads images and audio
            only with TensorFlow installed; fasttb decodes them with Pillow and ``wave``).
        skip_corrupt: Skip corrupt records with a warning instead of raising
            ``CorruptRecordError``. fasttb only.
        storage_options: For a ``log_path`` that is an fsspec URL (``s3://bucket/run``,
            ``gs://...``, ``memory://...``): the file system's options (credentials, endpoint).
            fasttb only.
    """

    def __init__(self, log_path: PathLike, *, pivot: bool = False, extra_columns: Optional[Set[str]] = None,
                 event_types: Optional[Set[str]] = None, skip_corrupt: bool = False,
                 storage_options: Optional[Dict[str, Any]] = None,
                 _files: Optional[Dict[str, EventFile]] = None, _fs: Any = None) -> None:
        extra = extra_columns if extra_columns is not None else set()
        if not isinstance(extra, set):
            raise ValueError(f"extra_columns: expected a set, got {type(extra).__name__}")
        extra = set(extra)
        unknown = extra - ALL_EXTRA_COLUMNS
        if unknown:
            raise KeyError(f"Invalid columns entries: {unknown}")
        types = event_types or ALL_EVENT_TYPES
        if not isinstance(types, (set, frozenset)):
            raise ValueError(f"event_types: expected a set, got {type(types).__name__}")
        types = set(types)
        unknown = types - ALL_EVENT_TYPES
        if unknown:
            raise KeyError(f"Invalid event types: {unknown}")
        self._log_path = os.fspath(log_path)
        self._pivot = bool(pivot)
        self._extra_columns = extra
        self._event_types = types
        self._skip_corrupt = skip_corrupt
        fs = _fs if _fs is not None else files_for(self._log_path, storage_options)
        if _fs is None and not fs.exists(self._log_path):
            raise ValueError(f"File or directory not found: {self._log_path}")
        self._children: Dict[str, SummaryReader] = {}
        self._file: Optional[EventFile] = None
        if _files is None:  # the root: read every event file of the tree at once
            paths = [p for p in _walk(self._log_path, fs) if is_summary_events_file(p)]
            values = bool(types - {SCALARS})
            _files = dict(zip(paths, scan_tree(paths, skip_corrupt, SCALARS in types, values, files=fs)))
        if fs.isfile(self._log_path):
            self._file = _files.get(self._log_path) or EventFile.empty(self._log_path)
        else:
            for name in fs.listdir(self._log_path):
                child = fs.join(self._log_path, name)
                if not (fs.isfile(child) or _is_folder(child, fs)):
                    continue
                self._children[name] = SummaryReader(
                    child, pivot=pivot, extra_columns=extra,
                    event_types=types, skip_corrupt=skip_corrupt, _files=_files, _fs=fs)

    def __repr__(self) -> str:
        return f"SummaryReader(log_path='{self._log_path}')"

    def __getitem__(self, child: str) -> "SummaryReader":
        return self._children[child]

    @property
    def log_path(self) -> str:
        """The directory or file this reader reads."""
        return self._log_path

    @property
    def children(self) -> Dict[str, "SummaryReader"]:
        """A reader for each entry of the directory, by name (a copy)."""
        return self._children.copy()

    @property
    def tags(self) -> Dict[str, List[str]]:
        """{event type: tags}, as ``get_tags()``."""
        return self.get_tags()  # type: ignore[return-value]

    def get_tags(self, event_type: Optional[str] = None) -> Union[List[str], Dict[str, List[str]]]:
        """The tags of one event type, or of each when ``event_type`` is None (in the order
        they first appear; text tags as written, with their ``/text_summary`` suffix)."""
        if event_type is not None and event_type not in ALL_EVENT_TYPES:
            raise ValueError(f"Unknown event_type: {event_type}")
        kinds = [event_type] if event_type is not None else [IMAGES, AUDIO, HISTOGRAMS, SCALARS, TENSORS, HPARAMS, TEXT]
        out: Dict[str, List[str]] = {}
        for kind in kinds:
            if self._file is not None:
                out[kind] = self._file.tags_of(kind) if kind in self._event_types else []
            else:
                merged: List[str] = []
                for child in self._children.values():
                    merged += child.get_tags(kind)  # type: ignore[arg-type]
                out[kind] = list(dict.fromkeys(merged))
        return out[event_type] if event_type is not None else out

    # -- DataFrames ----------------------------------------------------------------------------

    @property
    def scalars(self) -> Any:
        """The scalars, as a DataFrame."""
        return self.get_events(SCALARS)

    @property
    def tensors(self) -> Any:
        """The tensor summaries that are neither text nor hparams, as a DataFrame."""
        return self.get_events(TENSORS)

    @property
    def histograms(self) -> Any:
        """The histograms, as a DataFrame (``counts`` and ``limits`` arrays per row)."""
        return self.get_events(HISTOGRAMS)

    @property
    def images(self) -> Any:
        """The images, decoded to uint8 arrays (needs Pillow), as a DataFrame."""
        return self.get_events(IMAGES)

    @property
    def audio(self) -> Any:
        """The audio clips, decoded to float32 arrays, as a DataFrame."""
        return self.get_events(AUDIO)

    @property
    def hparams(self) -> Any:
        """The hyperparameters of each add_hparams run, as a DataFrame."""
        return self.get_events(HPARAMS)

    @property
    def text(self) -> Any:
        """The texts, as a DataFrame."""
        return self.get_events(TEXT)

    def _check_type(self, event_type: str) -> None:
        if event_type not in ALL_EVENT_TYPES:
            raise ValueError(f"Unknown event_type: {event_type}")
        if event_type not in self._event_types:
            raise ValueError(f"event_type is ignored by user: {event_type}")

    def get_events(self, event_type: str) -> Any:
        """All events of one type under ``log_path`` as a pandas DataFrame, sorted by tag and step
        (directory and file first when those columns are asked for), as tbparse returns it."""
        self._check_type(event_type)
        pd = require("pandas", "a SummaryReader's DataFrame", "pandas")

        if event_type == SCALARS and not self._pivot:
            columns = self._scalar_columns()
            if not len(columns["step"]):
                return pd.DataFrame()
            return pd.DataFrame({name: _text_array(values[0], values[1], pd) if isinstance(values, tuple) else values
                                 for name, values in columns.items()})
        return _tbparse_events(self, event_type, pd)

    # -- numpy columns -------------------------------------------------------------------------

    def _leaves(self, dir_name: str = "") -> Iterable[Tuple["SummaryReader", str]]:
        if self._file is not None:
            yield self, dir_name
            return
        for name, child in self._children.items():
            if child._file is None:
                yield from child._leaves(name if not dir_name else dir_name + "/" + name)
            else:
                yield from child._leaves(dir_name)

    def columns(self, event_type: str = SCALARS) -> Dict[str, np.ndarray]:
        """The events of one type as numpy arrays, without pandas: the columns and rows of the
        long (``pivot=False``) DataFrame, in its order. Text, and values that are arrays
        (histogram counts, images), come as object arrays."""
        self._check_type(event_type)
        if event_type != SCALARS:
            return self._other_columns(event_type)
        out = {}
        for name, values in self._scalar_columns().items():
            if isinstance(values, tuple):  # (distinct strings, each row's index)
                values = values[0][values[1]]
            out[name] = values
        return out

    def _other_columns(self, event_type: str) -> Dict[str, np.ndarray]:
        merged: Dict[str, list] = {}
        total = 0
        for leaf, dir_name in self._leaves():
            cols = _leaf_cols(leaf, event_type, pivot=False)
            n = len(next(iter(cols.values()))) if cols else 0
            if not n:
                continue
            if "dir_name" in cols:
                cols["dir_name"] = [dir_name] * n
            for name, values in cols.items():
                merged.setdefault(name, [np.nan] * total).extend(values)
            total += n
            for name, values in merged.items():
                values.extend([np.nan] * (total - len(values)))
        keys = [c for c in ("dir_name", "file_name", "tag", "step") if c in merged]
        order = sorted(range(total), key=lambda i: tuple(merged[c][i] for c in keys))
        out = {}
        for name, values in merged.items():
            ordered = [values[i] for i in order]
            if all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in ordered):
                out[name] = np.asarray(ordered)
            else:
                column = np.empty(total, dtype=object)
                column[:] = ordered
                out[name] = column
        return out

    def _scalar_columns(self) -> Dict[str, Any]:
        """The scalars of every file, stably sorted by (directory, file, tag, step) as tbparse
        sorts them. Text columns come as (names, codes): an object array of the distinct values
        and each row's index into it."""
        steps, values, walls, tags, dirs, files = [], [], [], [], [], []
        names: Dict[str, int] = {}
        for leaf, dir_name in self._leaves():
            f = leaf._file
            assert f is not None
            if not len(f.scalar_step):
                continue
            ids = np.array([names.setdefault(t, len(names)) for t in f.tags], dtype=np.int64)
            steps.append(f.scalar_step)
            values.append(f.scalar_value)
            walls.append(f.scalar_wall_time)
            tags.append(ids[f.scalar_tag])
            dirs.append((dir_name, len(f.scalar_step)))
            files.append((os.path.basename(f.path), len(f.scalar_step)))
        if not steps:
            return {"step": np.zeros(0, np.int64), "tag": (np.zeros(0, object), np.zeros(0, np.int64)),
                    "value": np.zeros(0)}
        step = np.concatenate(steps)
        tag_names = np.array(list(names), dtype=object)
        tag_codes, tag_names = _sorted_codes(tag_names, np.concatenate(tags))
        keys = [step, tag_codes]
        text: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}
        for name, parts in (("file_name", files), ("dir_name", dirs)):
            if name in self._extra_columns:
                labels = np.array([p[0] for p in parts], dtype=object)
                per_row = np.repeat(np.arange(len(parts)), [p[1] for p in parts])
                codes, unique = _sorted_codes(labels, per_row)
                keys.append(codes)
                text[name] = (unique, codes)
        perm = np.lexsort(keys)  # stable: ties keep file order, then record order
        out: Dict[str, Any] = {"step": step[perm], "tag": (tag_names, tag_codes[perm]),
                               "value": np.concatenate(values)[perm]}
        if "wall_time" in self._extra_columns:
            out["wall_time"] = np.concatenate(walls)[perm]
        for name in ("dir_name", "file_name"):
            if name in text:
                unique, codes = text[name]
                out[name] = (unique, codes[perm])
        return out


def _sorted_codes(names: np.ndarray, codes: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Rows' codes into ``names`` re-coded into the sorted distinct names: (codes, sorted names).
    Codes then order as the strings do."""
    unique, inverse = np.unique(names, return_inverse=True)
    return inverse.reshape(-1)[codes], unique


def _text_array(names: np.ndarray, codes: np.ndarray, pd: Any) -> Any:
    """A pandas text column of ``names[codes]``, of the dtype pandas gives lists of str. With
    pyarrow-backed strings it is built as a dictionary array and cast: four times faster than
    converting a million Python strings."""
    text = pd.Series(["x"]).dtype
    if getattr(text, "storage", None) == "pyarrow" and len(names):
        try:
            import pyarrow as pa

            dictionary = pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32)), pa.array(list(names)))
            return pd.array(dictionary.cast(pa.large_string()), dtype=text)
        except ImportError:
            pass
    return pd.array(names[codes], dtype=text)


def _walk(path: str, fs: Any = _LOCAL) -> List[str]:
    """Every file under ``path`` (or ``path`` itself), directories in name order."""
    if fs.isfile(path):
        return [path]
    out: List[str] = []
    for name in fs.listdir(path):
        child = fs.join(path, name)
        if fs.isfile(child):
            out.append(child)
        elif _is_folder(child, fs):
            out.extend(_walk(child, fs))
    return out


def _is_folder(path: str, fs: Any) -> bool:
    """Whether ``path``, no file, is a folder to read. Passed over on this machine: what is
    neither file nor folder (a dangling link, a FIFO), and a link that would make the tree
    endless: to a folder above it, or to a folder that the path already went through (two
    sibling folders linking to each other). (An object store has only files and folders.)"""
    if not isinstance(fs, LocalFiles):
        return True
    if not os.path.isdir(path):
        return False
    if os.path.islink(path):
        target = os.path.realpath(path)
        above = os.path.realpath(os.path.dirname(path))
        if above == target or above.startswith(target.rstrip(os.sep) + os.sep):
            return False
        folder = os.path.dirname(os.path.abspath(path))
        while True:
            if os.path.realpath(folder) == target:
                return False
            parent = os.path.dirname(folder)
            if parent == folder:
                break
            folder = parent
    return True


# -- tbparse's DataFrames ------------------------------------------------------------------------------


def _leaf_cols(reader: SummaryReader, event_type: str, pivot: Optional[bool] = None) -> Dict[str, list]:
    """One file's columns for ``event_type``, laid out as tbparse lays them out before it sorts."""
    f = reader._file
    assert f is not None
    extra = reader._extra_columns
    pivot = reader._pivot if pivot is None else pivot
    from . import proto

    rows: List[Tuple[str, int, float, Dict[str, Any]]] = []  # (tag, step, wall_time, {column: value})
    if event_type == SCALARS:
        for tag_id in f.scalar_tags:
            tag = f.tags[tag_id]
            for k in np.flatnonzero(f.scalar_tag == tag_id):
                rows.append((tag, int(f.scalar_step[k]), float(f.scalar_wall_time[k]),
                             {"value": float(f.scalar_value[k])}))
    elif event_type == HPARAMS:
        for tag, value in f._session_start_hparams().items():
            rows.append((tag, 0, 0.0, {"value": value}))
    else:
        for raw_tag in f.tags_of(event_type):
            tag = raw_tag[:-len(_TEXT_SUFFIX)] if event_type == TEXT and raw_tag.endswith(_TEXT_SUFFIX) else raw_tag
            for step, wall, payload in f.values(event_type, raw_tag):
                rows.append((tag, step, wall, _decode(event_type, payload, proto)))
    n = len(rows)
    cols: Dict[str, list] = {}

    def column(name: str) -> list:
        if name not in cols:
            cols[name] = [np.nan] * n
        return cols[name]

    if "dir_name" in extra:
        cols["dir_name"] = [""] * n
    if "file_name" in extra:
        cols["file_name"] = [os.path.basename(reader._log_path)] * n
    if "wall_time" in extra and event_type != HPARAMS:
        cols["wall_time"] = [r[2] for r in rows]
    for i, (tag, row_step, _, fields) in enumerate(rows):
        if event_type != HPARAMS:
            column("step")[i] = row_step
        if event_type == HISTOGRAMS:
            if not pivot:
                column("tag")[i] = tag
            wanted = extra | {"limits", "counts"}
            for key, value in fields.items():
                if key in wanted:
                    column(key if not pivot else tag + "/" + key)[i] = value
            continue
        if pivot:
            column(tag)[i] = fields["value"]
        else:
            column("tag")[i] = tag
            column("value")[i] = fields["value"]
        for key in ("height", "width", "content_type", "length_frames", "sample_rate"):
            if key in fields and key in extra:
                column(key if not pivot else tag + "/" + key)[i] = fields[key]
    for name in ("wall_time", "dir_name", "file_name"):
        if name in cols:
            cols[name] = cols.pop(name)
    return cols


def _decode(event_type: str, payload: bytes, proto: Any) -> Dict[str, Any]:
    """The columns of one value of ``event_type`` from its payload bytes, in tbparse's order."""
    if event_type == HISTOGRAMS:
        h = proto.HistogramProto.FromString(payload)
        return {"counts": np.array(h.bucket, dtype=np.float64), "limits": np.array(h.bucket_limit, dtype=np.float64),
                "max": h.max, "min": h.min, "num": h.num, "sum": h.sum, "sum_squares": h.sum_squares}
    if event_type == IMAGES:
        im = proto.Summary.Image.FromString(payload)
        return {"value": decode_image(im.encoded_image_string), "height": im.height, "width": im.width}
    if event_type == AUDIO:
        au = proto.Summary.Audio.FromString(payload)
        samples, _ = decode_wav(au.encoded_audio_string)
        return {"value": samples, "content_type": au.content_type, "length_frames": au.length_frames,
                "sample_rate": au.sample_rate}
    value = tensor_to_ndarray(proto.TensorProto.FromString(payload))
    if event_type == TEXT:
        text = value.item()
        if not isinstance(text, bytes):
            raise ValueError("text: a text summary whose tensor is not a string")
        return {"value": text.decode("utf-8")}
    return {"value": value.item() if value.shape == () else value}


def _merge(values: Any) -> Any:
    """Several values of one tag at one step, merged as tbparse merges them."""
    if len(values) == 1:
        return values
    merged: list = []
    for v in values:
        if isinstance(v, list):
            merged.extend(v)
        elif np.isscalar(v):
            if not _isnull(v):
                merged.append(v)
        else:
            merged.append(v)
    if not merged:
        return np.nan
    return merged[0] if len(merged) == 1 else merged


def _merged(stacked: Any, group: List[Any], pd: Any) -> Any:
    """``stacked`` grouped by ``group``, each column's values in a group merged by ``_merge``.
    A numeric column with at most one value (not NaN) in every group, the rule for scalars of
    several tags, merges to that value or NaN: pandas' ``first()`` does that without a Python
    call per group, which made ``pivot=True`` take seconds on 100k scalars."""
    grouped = stacked.groupby(group, sort=False)
    keys = [c for c in group if isinstance(c, str)]
    columns = [c for c in stacked.columns if c not in keys]
    counts = grouped[columns].count()
    fast = [c for c in columns if stacked[c].dtype.kind in "fiub" and bool((counts[c] <= 1).all())]
    slow = [c for c in columns if c not in fast]
    parts = []
    if fast:
        parts.append(grouped[fast].first())
    if slow:
        with warnings.catch_warnings():
            # _merge returns a tag's only value as tbparse does, as the Series pandas 3.1 still
            # unwraps but warns about (an array value could not be returned bare).
            warnings.filterwarnings("ignore", message="Converting a Series or array of length 1")
            parts.append(grouped[slow].aggregate(_merge))
    merged = parts[0] if len(parts) == 1 else pd.concat(parts, axis=1)
    return merged[columns].reset_index()


def _isnull(v: Any) -> bool:
    import pandas as pd

    return bool(pd.isnull(v))


def _tbparse_events(reader: SummaryReader, event_type: str, pd: Any) -> Any:
    """tbparse's get_events: each file's frame, then each directory's children's frames
    stacked, sorted and (pivot) merged, level by level."""
    extra = reader._extra_columns
    group: List[Any] = [c for c in ("dir_name", "file_name") if c in extra]
    frames = []
    if reader._file is not None:
        frames.append(pd.DataFrame.from_dict(_leaf_cols(reader, event_type)))
    else:
        for child in reader._children.values():
            df = _tbparse_events(child, event_type, pd)
            if "dir_name" in df and child._file is None:
                name = os.path.basename(child._log_path)
                top = df["dir_name"] == ""
                df.loc[top, "dir_name"] = name
                df.loc[~top, "dir_name"] = name + "/" + df.loc[~top, "dir_name"]
            frames.append(df)
    if not frames:
        return pd.DataFrame()
    stacked = pd.concat(frames, ignore_index=True)
    if stacked.empty:
        return pd.DataFrame()
    if not reader._pivot:
        group.append("tag")
    group.append("step")
    group = [c for c in group if c in stacked.columns]
    stacked = stacked.sort_values(group, ignore_index=True)
    if not reader._pivot:
        return stacked
    if not group:
        group = [True] * len(stacked)
    merged = _merged(stacked, group, pd)
    middle = sorted(c for c in stacked.columns if c not in ("step", "wall_time", "dir_name", "file_name"))
    order = [c for c in ["step"] + middle + ["wall_time", "dir_name", "file_name"] if c in stacked.columns]
    return merged[order]

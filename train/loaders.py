"""Loaders: batches of training windows, on the training device, overlapping the step.

Three sources, chosen once per run by `choose_cache` (`data.cache`):
- "gpu": the split's frames held in accelerator memory (int8 tokens stay int8, dequantised
  per batch); a batch is one gather on the device;
- "ram": the split's frames in host memory, gathered in a background thread into pinned
  batches (on CUDA) that are copied to the device without blocking;
- "stream": windows read from the store per batch, in DataLoader worker processes
  (`data.workers`) or a background thread, `data.prefetch` batches ahead.
"auto" takes the first that fits, estimated from the store's array shapes and dtypes before
anything is read. Every source assembles batches with `windows.assemble_window`; the host
sources copy its compact half (`gather_window`: float16 / int8 tokens, int8 labels) to the
device and finish it there (`finish_window`: float32, dequantised, means subtracted), so the
copy is 2-4x smaller than the batch. `memory_batches` (no thread, no worker) is the plain
reference the others are tested against.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable, Iterator

import numpy as np
import torch

from train.config import DataConfig
from train.tracks import Track, open_store, read_frames
from train.windows import (
    MEAN,
    SCALE,
    FrameTable,
    Segment,
    assemble_window,
    finish_window,
    gather_window,
    whole_tracks,
    window_segments,
)

log = logging.getLogger(__name__)

RAM_SHARE = 0.6  # the RAM cache may take this share of the memory available now
GPU_SHARE = 0.5  # the GPU cache may take this share of free device memory (the rest: the step)
CACHE_MODES = ("auto", "gpu", "ram", "stream", "none")  # "none" is the older name of "stream"

Batch = dict[str, torch.Tensor]


# ----------------------------------------------------------------------------- sizes and choice


def frame_bytes(reader, track_id: str, features: dict[str, str], keys: list[str]) -> int:
    """Bytes one frame takes in a cache, from the store's array metadata (nothing read):
    features in their cached dtype, int8 scales, labels and masks."""
    total = 12 + 3  # labels (12,) int8, face/train/audio masks
    for key in keys:
        path = features[key]
        shape = reader.shape(track_id, path)[1:]
        per = int(np.prod(shape)) if shape else 1
        storage = reader.token_storage(track_id, path)
        if storage is not None and storage.kind == "int8":
            total += per + int(np.prod(shape[:-1])) * 4  # int8 tokens + float32 scale per token
        else:
            total += per * (4 if key == "rois" else 2)
    return total


def cache_bytes(reader, track_ids: list[str], features: dict[str, str], keys: list[str]) -> int:
    """Bytes a cache of the tracks `track_ids` takes: frames (from track metadata) x bytes per
    frame of the first track. Nothing is read but metadata."""
    if not track_ids:
        return 0
    frames = sum(int(reader.n_frames(t)) for t in track_ids) + 1
    return frames * frame_bytes(reader, track_ids[0], features, keys)


def available_ram() -> int:
    """Bytes of host memory available now (MemAvailable; the kernel's own estimate)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def free_gpu_memory(device: torch.device) -> int:
    """Bytes free on a CUDA device (0 for other devices)."""
    if device.type != "cuda":
        return 0
    free, _ = torch.cuda.mem_get_info(device)
    return int(free)


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def choose_cache(
    mode: str,
    device: torch.device,
    need: int,
    ram: Callable[[], int] | None = None,
    gpu: Callable[[torch.device], int] | None = None,
    processes: int = 1,
) -> tuple[str, str]:
    """("gpu" | "ram" | "stream", why) for `data.cache` = `mode` and a cache of `need` bytes.

    A cache is used only when it fits with a margin (GPU_SHARE of free device memory,
    RAM_SHARE of available host memory); asked for one that does not fit, the next one down
    is taken and `why` says so. `ram` and `gpu` probe free memory (tests replace them);
    `processes` caching on this host at once (DDP ranks) share its RAM."""
    ram, gpu = ram or available_ram, gpu or free_gpu_memory
    if mode in ("stream", "none"):
        return "stream", "data.cache=stream"
    reasons = []
    if mode in ("auto", "gpu"):
        if device.type == "cuda":
            free = gpu(device)
            if need <= GPU_SHARE * free:
                return "gpu", f"cache of {_gib(need)} on {device} ({_gib(free)} free)"
            reasons.append(f"{_gib(need)} > {GPU_SHARE:.0%} of {_gib(free)} free on {device}")
        elif mode == "gpu":
            reasons.append(f"no GPU cache on {device}")
    free = ram()
    each = f" for each of {processes} processes" if processes > 1 else ""
    if need * processes <= RAM_SHARE * free:
        why = f"cache of {_gib(need)}{each} in RAM ({_gib(free)} available)"
        return "ram", "; ".join(reasons + [why])
    reasons.append(f"{_gib(need)}{each} > {RAM_SHARE:.0%} of {_gib(free)} available RAM")
    return "stream", "reading windows from the store: the split does not fit (" + "; ".join(
        reasons
    ) + ")"


# ----------------------------------------------------------------------------- caches


def store_frames(reader, features: dict[str, str], keys: list[str]):
    """A FrameReader over the store (compact dtypes, int8 kept with its scale)."""

    def frames(seg: Segment) -> list:
        return read_frames(reader, seg.track.track_id, features, keys, seg.start, seg.stop)

    return frames


def to_device(batch: Batch, device: torch.device) -> Batch:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def finish_on(raw: Batch, device: torch.device) -> Batch:
    """A compact host batch copied to `device` (without blocking when pinned), finished there;
    a batch already finished (on a CPU, by the thread or worker that made it) is passed on."""
    labels = raw.get("labels")
    compact = any(k.startswith((SCALE, MEAN)) for k in raw) or (
        labels is not None and not labels.is_floating_point()
    )
    if not compact:
        return to_device(raw, device)
    return finish_window(to_device(raw, device))


def memory_batches(
    table: FrameTable,
    windows: np.ndarray,
    order: np.ndarray,
    batch_size: int,
    window: int,
    device: torch.device,
) -> Iterator[Batch]:
    """Plain reference: batches of windows[order] gathered from `table`, one after the other."""
    for b in range(0, len(order), batch_size):
        sel = windows[order[b : b + batch_size]]
        yield to_device(assemble_window(table, sel[:, 0], sel[:, 1], window), device)


class Prefetch:
    """Runs an iterator of batches in a background thread, `depth` batches ahead.

    Host batches are pinned (on CUDA) so the copy to the device does not block the step.
    Errors raised in the thread are raised again in the consumer; stopping early stops the
    thread."""

    def __init__(self, batches: Iterator[Batch], depth: int, device: torch.device):
        self.device = device
        self.pin = device.type == "cuda"
        self.queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(batches,), daemon=True)
        self.thread.start()

    def _put(self, item) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, batches: Iterator[Batch]) -> None:
        try:
            for batch in batches:
                if self.device.type == "cpu" and "labels" in batch:
                    batch = finish_window(batch)  # no copy to overlap: finish here
                if self.pin:
                    batch = {
                        k: v.pin_memory() if v.device.type == "cpu" else v for k, v in batch.items()
                    }
                if not self._put(("batch", batch)):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(("error", exc))
            return
        self._put(("end", None))

    def __iter__(self) -> Iterator[Batch]:
        try:
            while True:
                kind, item = self.queue.get()
                if kind == "end":
                    return
                if kind == "error":
                    raise item
                yield finish_on(item, self.device)
        finally:
            self.close()

    def close(self) -> None:
        self.stop.set()
        while not self.queue.empty():
            try:
                self.queue.get_nowait()
            except queue.Empty:
                break
        self.thread.join(timeout=10)


class StoreBatches(torch.utils.data.Dataset):
    """Batch b of an epoch read from the store: its windows packed into a small FrameTable and
    assembled like every other batch. One reader per worker process."""

    def __init__(
        self,
        store_url: str,
        tracks: list[Track],
        windows: np.ndarray,
        features: dict[str, str],
        keys: list[str],
        cfg: DataConfig,
        batch_size: int,
        reader=None,
    ):
        """`reader`: a reader of `store_url` already open in this process (other processes,
        workers included, open their own)."""
        self.store_url = str(store_url)
        self.tracks = tracks
        self.windows = windows
        self.features = features
        self.keys = keys
        self.cfg = cfg
        self.batch_size = batch_size
        self.order = np.zeros(0, np.int64)
        self.finish = False  # finish batches in the worker (when training on a CPU)
        self._reader = reader
        self._pid = os.getpid() if reader is not None else -1

    def reader(self):
        if self._reader is None or self._pid != os.getpid():
            self._reader = open_store(self.store_url)
            self._pid = os.getpid()
        return self._reader

    def __len__(self) -> int:
        return (len(self.order) + self.batch_size - 1) // self.batch_size

    def __getitem__(self, b: int) -> Batch:
        sel = self.windows[self.order[b * self.batch_size : (b + 1) * self.batch_size]]
        segments = window_segments(self.tracks, sel, self.cfg.window)
        frames = store_frames(self.reader(), self.features, self.keys)
        table = FrameTable(segments, self.keys, self.cfg, frames=frames)
        starts = np.zeros(len(sel), np.int64)
        raw = gather_window(table, np.arange(len(sel)), starts, self.cfg.window)
        return finish_window(raw) if self.finish else raw  # compact unless training on a CPU

    def __getstate__(self) -> dict:
        """Workers get a copy without the reader; each opens its own (see reader())."""
        state = dict(self.__dict__)
        state["_reader"] = None
        state["_pid"] = -1
        return state


class WindowLoader:
    """Batches of an epoch's window order on `device`, from a cache or from the store."""

    def __init__(
        self,
        kind: str,
        windows: np.ndarray,
        cfg: DataConfig,
        batch_size: int,
        device: torch.device,
        *,
        table: FrameTable | None = None,
        store: StoreBatches | None = None,
        seed: int = 0,
    ):
        self.kind = kind
        self.windows = windows
        self.cfg = cfg
        self.batch_size = batch_size
        self.device = device
        self.table = table
        self.store = store
        self.seed = seed

    def epoch(self, order: np.ndarray) -> Iterator[Batch]:
        """Batches of windows[order] (the last one may be short), prefetched when configured."""
        depth = self.cfg.prefetch
        if self.table is not None:
            if self.kind == "gpu" or depth <= 0:  # a gather on the device is asynchronous
                return memory_batches(
                    self.table, self.windows, order, self.batch_size, self.cfg.window, self.device
                )
            return iter(Prefetch(self._compact(order), depth, self.device))
        self.store.order = np.asarray(order)
        self.store.finish = self.device.type == "cpu" and self.cfg.workers > 0
        if self.cfg.workers > 0:
            loader = torch.utils.data.DataLoader(
                self.store,
                batch_size=None,
                shuffle=False,
                num_workers=self.cfg.workers,
                prefetch_factor=max(1, depth),
                pin_memory=self.cfg.pin_memory and self.device.type == "cuda",
                persistent_workers=False,
                # its own generator: the loader must not draw from the global RNG (dropout's)
                generator=torch.Generator().manual_seed(self.seed),
            )
            return (finish_on(b, self.device) for b in loader)
        plain = (self.store[b] for b in range(len(self.store)))
        if depth <= 0:
            return (finish_on(b, self.device) for b in plain)
        return iter(Prefetch(plain, depth, self.device))

    def _compact(self, order: np.ndarray) -> Iterator[Batch]:
        """Compact batches gathered from the host table (finished on the device)."""
        w, bs = self.cfg.window, self.batch_size
        for b in range(0, len(order), bs):
            sel = self.windows[order[b : b + bs]]
            yield gather_window(self.table, sel[:, 0], sel[:, 1], w)


def build_cache(
    kind: str,
    reader,
    tracks: list[Track],
    features: dict[str, str],
    keys: list[str],
    cfg: DataConfig,
    device: torch.device,
) -> FrameTable:
    """A FrameTable of whole `tracks` read from the store onto `device` ("gpu") or into host
    RAM ("ram"; batches are pinned one at a time by Prefetch, not the whole table)."""
    where = device if kind == "gpu" else torch.device("cpu")
    return FrameTable(whole_tracks(tracks), keys, cfg, where, store_frames(reader, features, keys))

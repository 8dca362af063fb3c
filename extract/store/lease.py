"""One writer per track: a lease taken before a track is written and dropped at commit or abort.

A job launched twice, a requeued SLURM task or two shards with the same index must not write (and
delete) the same track at once. So `StoreWriter.open_track` takes a lease first; a live lease held
by another process raises `TrackLeased` and nothing is touched.

Layout: `<store>/.leases/<track_id>/<generation>.json`, outside `tracks/` (the reader's track
listing, zarr's consolidation and merge never see it; zarr skips the dot-folder). Each file holds
its holder: host, pid, the process start time (so a reused pid is not mistaken for the holder),
the pid space (host, boot id and pid namespace: a pid is only judged where it means the same
process), start time, heartbeat (epoch seconds) and a random token. The holder of a track is the file with
the highest generation. Taking a lease means creating generation `top + 1` exclusively:

- a free track (no file, or the top one released) or a stale top lease (its pid is dead in this
  pid space, its pid now belongs to another process, or its heartbeat is older than
  `stale_after`)
  may be taken; a live one raises TrackLeased;
- two takers racing for the same generation: exclusive creation lets exactly one win, the other
  re-reads and finds a live lease;
- a slow taker that creates an old generation after it was cleaned up finds a higher one when it
  lists again and backs off. Files are never modified by anyone but their holder, and the top
  generation is never deleted (release marks it released), so "highest generation" is always
  present and is always the one holder.

A heartbeat thread rewrites the holder's file every `stale_after / 6` seconds while its
TrackWriter lives; `check()` (run by the heartbeat and before commit) raises LeaseLost when a
higher generation exists.

What holds where:
- local disks (and NFS v3+ with working hard links): exclusive creation is `os.link` of a fully
  written temporary file, atomic; the file gets the umask's mode.
- S3 (s3fs): exclusive creation is a conditional PUT (`If-None-Match: *`, s3fs `mode="create"`),
  atomic on AWS S3 since 2024, on moto and on most S3-compatible servers (MinIO, Ceph RGW).
- other fsspec stores: exists-check, write, read back the token and list again: best effort (two
  takers within one round trip could both win; the commit check then catches the loser only if
  the winner's generation is visible to it).
Staleness by heartbeat compares wall clocks of different hosts: keep clocks in sync (NTP) and
`stale_after` well above any skew. The commit check and the write of `status = complete` are two
steps; a takeover between them needs a holder silent for `stale_after`, so keep it minutes.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import re
import secrets
import socket
import threading
import time
from typing import Any

from data_manifest.shared_files import shared_mode

log = logging.getLogger(__name__)

LEASES = ".leases"  # folder under the store root (hidden from zarr and the track listing)
LEASE_STALE_AFTER = 180.0  # seconds without a heartbeat after which a lease may be taken over
_GEN = re.compile(r"^(\d{12})\.json$")


class TrackLeased(RuntimeError):
    """Another live process holds the lease of this track; `.holder` says who (host, pid, since)."""

    def __init__(self, track_id: str, holder: dict, url: str = ""):
        self.track_id = track_id
        self.holder = dict(holder)
        age = time.time() - float(holder.get("heartbeat", 0) or 0)
        where = f" of {url}" if url else ""
        super().__init__(
            f"track {track_id!r}{where} is being written by pid {holder.get('pid')} on host "
            f"{holder.get('host')!r} since {holder.get('started')} (last heartbeat {age:.0f} s ago); "
            "skipped"
        )


class LeaseLost(RuntimeError):
    """This process's lease on a track was taken over (it looked stale to another process)."""


def process_start(pid: int) -> str | None:
    """Start time of process `pid` in clock ticks since boot (Linux), None where unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()  # the command name may hold spaces
    return fields[19] if len(fields) > 19 else None


def process_space() -> str:
    """Which pid space this process lives in: boot id + pid namespace (Linux), else the host name.

    Two containers (or machines) may share a host name; a pid is only checked where it means
    the same process."""
    parts = [socket.gethostname()]
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            parts.append(f.read().strip())
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    except OSError:
        pass
    return ":".join(parts)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True


def stale_reason(info: dict, stale_after: float, now: float | None = None) -> str | None:
    """Why the lease `info` may be taken over, or None while its holder is alive."""
    if info.get("released"):
        return "released"
    now = time.time() if now is None else now
    if info.get("pid_space", info.get("host")) == process_space():
        pid = int(info.get("pid", -1))
        if pid <= 0 or not _pid_alive(pid):
            return f"process {pid} on {info.get('host')} is gone"
        start = process_start(pid)
        if info.get("proc_start") and start and start != info.get("proc_start"):
            return f"pid {pid} on {info.get('host')} now belongs to another process"
    age = now - float(info.get("heartbeat", 0) or 0)
    if age > stale_after:
        return f"no heartbeat for {age:.0f} s"
    return None


class _LeaseFiles:
    """The lease files of one store: list generations, read, create exclusively, replace, delete."""

    def __init__(self, location):
        self.location = location
        self.s3 = "s3" in (
            location.fs.protocol
            if isinstance(location.fs.protocol, tuple)
            else (location.fs.protocol,)
        )

    def _key(self, tid: str, gen: int | None = None) -> str:
        return f"{LEASES}/{tid}" if gen is None else f"{LEASES}/{tid}/{gen:012d}.json"

    def generations(self, tid: str) -> list[int]:
        loc = self.location
        if loc.local:
            try:
                names = os.listdir(loc.path(self._key(tid)))
            except FileNotFoundError:
                return []
        else:
            path = loc.path(self._key(tid))
            loc.fs.invalidate_cache(path)
            try:
                names = [n.rstrip("/").rsplit("/", 1)[-1] for n in loc.fs.ls(path, detail=False)]
            except FileNotFoundError:
                return []
        return sorted(int(m.group(1)) for n in names if (m := _GEN.match(n)))

    def read(self, tid: str, gen: int) -> dict | None:
        try:
            data = self.location.read_bytes(self._key(tid, gen))
        except FileNotFoundError:
            return None
        try:
            return json.loads(data)
        except ValueError:
            return None  # only possible on a store without atomic writes: treat as absent

    def create(self, tid: str, gen: int, info: dict) -> bool:
        """Create generation `gen` with `info` unless it exists; True when this call created it."""
        data = json.dumps(info, indent=1).encode("utf-8")
        loc = self.location
        target = loc.path(self._key(tid, gen))
        if loc.local:
            folder = os.path.dirname(target)
            os.makedirs(folder, exist_ok=True)
            tmp = os.path.join(folder, f".tmp-{info['token']}")
            with open(tmp, "wb") as f:
                f.write(data)
            os.chmod(tmp, shared_mode())
            try:
                os.link(tmp, target)
                return True
            except FileExistsError:
                return False
            finally:
                os.unlink(tmp)
        if self.s3:
            try:
                loc.fs.pipe_file(target, data, mode="create")
            except FileExistsError:
                return False
            return True
        if loc.fs.exists(target):  # best effort (see the module docstring)
            return False
        loc.fs.pipe_file(target, data)
        again = self.read(tid, gen)
        return bool(again and again.get("token") == info["token"])

    def replace(self, tid: str, gen: int, info: dict) -> None:
        self.location.write_bytes(self._key(tid, gen), json.dumps(info, indent=1).encode("utf-8"))

    def delete(self, tid: str, gen: int) -> None:
        loc = self.location
        try:
            if loc.local:
                os.unlink(loc.path(self._key(tid, gen)))
            else:
                loc.fs.rm_file(loc.path(self._key(tid, gen)))
        except FileNotFoundError:
            pass


class Lease:
    """This process's lease on one track (see the module docstring)."""

    def __init__(self, files: _LeaseFiles, track_id: str, gen: int, info: dict, stale_after: float):
        self._files = files
        self.track_id = track_id
        self.gen = gen
        self.info = info
        self.stale_after = float(stale_after)
        self.released = False
        self.lost: str | None = None  # why the lease was lost, once the heartbeat noticed
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @classmethod
    def acquire(
        cls, location, track_id: str, stale_after: float = LEASE_STALE_AFTER, url: str = ""
    ) -> Lease:
        """Take the lease of `track_id` or raise TrackLeased naming the live holder."""
        files = _LeaseFiles(location)
        token = secrets.token_hex(8)
        for attempt in range(50):
            gens = files.generations(track_id)
            top = gens[-1] if gens else 0
            reason = "free"
            if gens:
                holder = files.read(track_id, top)
                if holder is None:  # removed or replaced between listing and reading: look again
                    time.sleep(0.001 * (attempt + 1))
                    continue
                reason = stale_reason(holder, stale_after)
                if reason is None:
                    raise TrackLeased(track_id, holder, url)
            gen = top + 1
            now = time.time()
            info = {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "proc_start": process_start(os.getpid()),
                "pid_space": process_space(),
                "started": _dt.datetime.fromtimestamp(now, _dt.timezone.utc).isoformat(
                    timespec="seconds"
                ),
                "heartbeat": now,
                "token": token,
                "generation": gen,
                "took_over": reason,
            }
            if not files.create(track_id, gen, info):
                continue  # another taker won this generation; re-read who holds it
            lease = cls(files, track_id, gen, info, stale_after)
            if lease._holds():
                if reason not in ("free", "released"):
                    log.warning(
                        "track %s of %s: took over a stale lease (%s)", track_id, url, reason
                    )
                for old in gens:  # the top stays until a higher one exists; older ones go
                    files.delete(track_id, old)
                return lease
            files.delete(track_id, gen)  # a higher generation appeared: it wins
        raise RuntimeError(f"track {track_id!r} of {url}: could not take its lease (contention)")

    def _holds(self) -> bool:
        gens = self._files.generations(self.track_id)
        if not gens or gens[-1] != self.gen:
            return False
        mine = self._files.read(self.track_id, self.gen)
        return bool(mine and mine.get("token") == self.info["token"])

    def check(self) -> None:
        """Raise LeaseLost unless this lease is still the track's live one."""
        if self.released:
            raise LeaseLost(f"track {self.track_id!r}: the lease was already released")
        if self.lost or not self._holds():
            gens = self._files.generations(self.track_id)
            other = self._files.read(self.track_id, gens[-1]) if gens else None
            who = (
                f"pid {other.get('pid')} on host {other.get('host')!r} since {other.get('started')}"
                if other
                else "nobody (the lease file is gone)"
            )
            self.lost = self.lost or f"now held by {who}"
            raise LeaseLost(
                f"track {self.track_id!r}: this process's lease was taken over; {self.lost}"
            )

    def heartbeat(self) -> None:
        """Refresh the heartbeat (only while still held)."""
        with self._lock:
            if self.released or self.lost:
                return
            if not self._holds():
                self.lost = "taken over while writing"
                log.error("track %s: lease lost (%s)", self.track_id, self.lost)
                return
            self.info = {**self.info, "heartbeat": time.time()}
            self._files.replace(self.track_id, self.gen, self.info)

    def start_heartbeat(self, interval: float | None = None) -> None:
        interval = self.stale_after / 6 if interval is None else interval

        def beat() -> None:
            while not self._stop.wait(interval):
                try:
                    self.heartbeat()
                except Exception as exc:  # a failed refresh is retried; the commit check decides
                    log.warning("track %s: lease heartbeat failed: %s", self.track_id, exc)

        self._thread = threading.Thread(target=beat, name=f"lease-{self.track_id}", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Stop the heartbeat and mark the lease released (a no-op once released or lost)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)
        with self._lock:
            if self.released:
                return
            self.released = True
            if self.lost or not self._holds():
                return  # someone else holds it now: their file is not ours to touch
            self._files.replace(
                self.track_id, self.gen, {**self.info, "heartbeat": time.time(), "released": True}
            )


def lease_states(location, stale_after: float = LEASE_STALE_AFTER) -> dict[str, dict]:
    """{track id: holder info + "state" ("live" or "stale") + "reason"} of unreleased leases."""
    files = _LeaseFiles(location)
    base = location.path(LEASES)
    try:
        if location.local:
            tids = [t for t in os.listdir(base) if not t.startswith(".")]
        else:
            location.fs.invalidate_cache(base)
            tids = [n.rstrip("/").rsplit("/", 1)[-1] for n in location.fs.ls(base, detail=False)]
    except FileNotFoundError:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for tid in sorted(tids):
        gens = files.generations(tid)
        info = files.read(tid, gens[-1]) if gens else None
        if not info or info.get("released"):
            continue
        reason = stale_reason(info, stale_after)
        out[tid] = {**info, "state": "live" if reason is None else "stale", "reason": reason}
    return out

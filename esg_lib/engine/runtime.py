"""Where and how a run executes: device, ``torchrun`` process group, threads, RNG state and checkpoints.

The run store (:mod:`.runs`) says *which* run and where its files live; provenance (:mod:`.provenance`)
records what it ran on; this module sets the machine up for it. ``reduce_values`` and ``gather_rng``
are no-ops for one process, so the trainer calls them unconditionally.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fnmatch
import os
import random
import re
import secrets
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterator

import numpy as np
import torch
from torch import nn

from esg_lib.errors import DiskWriteError, UserError


@dataclass
class Dist:
    world: int = 1
    rank: int = 0
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


def setup_distributed(device_pref: str) -> Dist:
    """Join the process group that ``torchrun`` describes in the environment (if any)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    initialized = False
    if not torch.distributed.is_initialized():
        use_cuda = torch.cuda.is_available() and device_pref != "cpu"
        if use_cuda:
            torch.cuda.set_device(local_rank)
        torch.distributed.init_process_group(backend="nccl" if use_cuda else "gloo")
        initialized = True
    return Dist(world, rank, local_rank, initialized)


def resolve_device(pref: str, dist: Dist) -> torch.device:
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    if pref.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"device {pref!r} requested but CUDA is not available")
        return torch.device(f"cuda:{dist.local_rank}" if pref == "cuda" else pref)
    if pref != "cpu":
        raise UserError(f"unknown device {pref!r} (auto, cpu, cuda, cuda:N)")
    return torch.device("cpu")


def available_cores() -> int:
    """The cores this process may run on: its CPU affinity (``taskset``, a container's cpuset), which
    its children inherit, else :func:`os.cpu_count`. A process pinned to one core of two (the way
    docs/development.md shares the cores with a long job; the test workers of ``make test``) then runs
    one thread, not two on one core."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):   # no sched_getaffinity (macOS, Windows)
        return os.cpu_count() or 1


def setup_threads(threads: int | None, dist: Dist) -> int:
    """``threads``, else the cores this process may run on (:func:`available_cores`) shared by the
    processes of a distributed run."""
    n = threads or max(1, available_cores() // dist.world)
    torch.set_num_threads(n)
    return n


# glibc's mallopt parameters (malloc.h) and the values set: larger than any activation at the
# paper's 224 px and batch 64 (a stage-0 MLP activation there is 128 MB), so none is mmap'd afresh.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MALLOC_KEEP_BYTES = 1 << 30


def tune_malloc() -> bool:
    """Keep freed tensor memory in the process instead of handing it back to the kernel (glibc only).

    glibc serves every allocation above its mmap threshold (128 KiB to 32 MiB, adapting) with a fresh
    ``mmap`` and returns it with ``munmap`` when freed. A training step allocates and frees hundreds
    of activation-sized tensors (10 MB each at 64 px, batch 64), so every one of them page-faults
    in anew: measured here, a 10 MB elementwise product took 3.5 ms into a new tensor and 0.6 ms into
    an existing one. Raising the mmap and trim thresholds to 1 GiB lets freed blocks be reused.

    The arithmetic is unchanged, so results stay bit-identical (a runtime setting, outside the run
    identity); the cost is resident memory that stays at its peak. Process-wide and irreversible;
    returns whether it took effect (False off Linux/glibc, e.g. macOS or musl).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MALLOC_KEEP_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, MALLOC_KEEP_BYTES))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": _to_lists(random.getstate()),
             "numpy": [np_state[0], np_state[1].tolist(), *[_plain(v) for v in np_state[2:]]]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_to_tuples(state["python"]))
    n = state["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), *n[2:]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def _to_lists(x: Any) -> Any:
    return [_to_lists(v) for v in x] if isinstance(x, (tuple, list)) else x


def _to_tuples(x: Any) -> Any:
    return tuple(_to_tuples(v) for v in x) if isinstance(x, list) else x


# errno values of a write that failed for lack of room: a full disk, a full quota, a file-size limit
NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})

# Fault injection for tests (docs/reliability.md, tests/test_faults.py). ESG_PAUSE_AT="POINT:NAME[:N]" makes
# the process print one line to stderr and sleep until it is killed, the N-th time (default 1) it reaches
# POINT for a file whose name matches the glob NAME. Points: "checkpoint" (save_checkpoint: the temporary
# file is written, not yet synced or renamed over the checkpoint), "write" (atomic_write: the content is
# handed to the temporary file, not yet flushed, synced or renamed: run JSON files, records, tables);
# callers may add their own (the tests pause training after an optimiser step through train.STEP_HOOK).
PAUSE_ENV = "ESG_PAUSE_AT"
_pauses_reached: dict[str, int] = {}


def pause_point(point: str, name: str) -> None:
    """Sleep until killed here if ``$ESG_PAUSE_AT`` names this point (see :data:`PAUSE_ENV`); else nothing."""
    spec = os.environ.get(PAUSE_ENV)
    if not spec:
        return
    want, _, rest = spec.partition(":")
    pattern, nth = rest, 1
    head, sep, tail = rest.rpartition(":")
    if sep and tail.isdigit():
        pattern, nth = head, int(tail)
    if want != point or not fnmatch.fnmatchcase(Path(name).name, pattern or "*"):
        return
    key = f"{point}:{pattern}"
    _pauses_reached[key] = _pauses_reached.get(key, 0) + 1
    if _pauses_reached[key] != nth:
        return
    print(f"esg: paused at {point} {name} ({PAUSE_ENV}={spec}), waiting to be killed", file=sys.stderr, flush=True)
    while True:
        time.sleep(3600)


def _free_bytes(folder: Path) -> int | None:
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):
        return None
    return st.f_bavail * st.f_frsize


def _write_failed(path: Path, exc: BaseException, free: int | None, what: str = "") -> DiskWriteError:
    """One line for a write that failed for lack of room, naming ``path``; the previous file is whole.
    ``free``: the bytes left on its file system when the write failed (before its temporary file went)."""
    code = getattr(exc, "errno", None)
    if code == errno.EFBIG:
        why = "the file would exceed the process's file-size limit"
    elif code == errno.EDQUOT:
        why = "the disk quota is exceeded"
    else:
        why = "no space left on its file system" + (f" ({free} bytes free)" if free is not None else "")
    err = DiskWriteError(f"cannot write {what}{path}: {why}; the previous {path.name} (if any) is unchanged; "
                         "free some space and run the same command again (training resumes from its last epoch)")
    err.errno, err.filename = code if code in NO_ROOM else errno.ENOSPC, str(path)
    return err


def _no_room(exc: BaseException, free: int | None) -> bool:
    """Whether ``exc`` is a write that failed for lack of room, ``free`` bytes being left: an ``OSError``
    says so by its errno, ``torch.save`` only in its own words (``unexpected pos``, ``file write failed``)."""
    if isinstance(exc, DiskWriteError):
        return False
    if isinstance(exc, OSError):
        return exc.errno in NO_ROOM
    if isinstance(exc, RuntimeError) and ("inline_container" in str(exc) or "write" in str(exc).lower()):
        return "file write failed" in str(exc) or (free is not None and free < 1 << 20)
    return False


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", **open_kw: Any) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; on success it is flushed, synced and renamed
    over ``path`` (``os.replace``, atomic on one file system), on any error (disk full, a kill signal
    turned into ``SystemExit``) it is removed. A reader, or a process killed mid-write, therefore
    sees either the old file or the new one, never half of one. The temporary name is unique
    (``.<name>.<pid>.<random>.tmp``), so two writers of one path never share a temporary file, and it
    is created with the usual permissions (0666 less the umask), so the final file's mode is unchanged.
    A write that fails for lack of room (full disk or quota, file-size limit) raises
    :class:`~esg_lib.errors.DiskWriteError` (a ``UserError`` and an ``OSError``), one line naming ``path``.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    except OSError as exc:
        if exc.errno in NO_ROOM:
            raise _write_failed(path, exc, _free_bytes(path.parent)) from None
        raise
    try:
        with os.fdopen(fd, mode, **open_kw) as fh:
            yield fh
            pause_point("write", path.name)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        free = _free_bytes(path.parent)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if _no_room(exc, free) and isinstance(exc, OSError):
            raise _write_failed(path, exc, free) from None
        raise


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """``torch.save`` to a temporary file beside ``path``, synced, then ``os.replace``-d over it: a save
    that is killed or fails (disk full) leaves the previous checkpoint whole, and the temporary file
    is removed on any error that Python sees. The temporary name keeps ``path``'s stem before its
    last dot (``last.tmp-<pid>-<random>``): ``torch.save`` names the archive's inner folder after it,
    so the bytes are those a direct save to ``path`` would write. A save that fails for lack of room
    raises :class:`~esg_lib.errors.DiskWriteError`, one line naming the checkpoint (PyTorch's own
    message for it is ``unexpected pos ...``)."""
    path = Path(path)
    tmp = path.with_name(f"{path.stem}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        torch.save(payload, tmp)
        pause_point("checkpoint", path.name)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        free = _free_bytes(path.parent)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if _no_room(exc, free):
            raise _write_failed(path, exc, free, "checkpoint ") from None
        raise


_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


def _checkpoint_problem(path: Path, exc: BaseException) -> str:
    """Why ``path`` could not be loaded, in this project's words. PyTorch's own message is never
    passed on: for a file that is not a plain checkpoint it advises loading it with pickle's full
    power, which for a file of unknown origin means running whatever code it holds."""
    text = str(exc)
    if path.stat().st_size == 0:
        return "the file is empty (0 bytes)"
    found = _UNSUPPORTED_GLOBAL.search(text)
    if found:
        return (f"it refers to a Python object ({found.group(1)}) that a checkpoint written by esg train "
                "never holds, and esg refuses to load such objects because unpickling them can run code")
    if "central directory" in text or "zip archive" in text or isinstance(exc, EOFError):
        return "the file is truncated or damaged (an interrupted copy or download?)"
    return "it is not a PyTorch checkpoint, or its bytes are damaged"


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint's contents, loaded with ``weights_only=True`` (tensors and plain values only).

    Any file that fails to load raises one :class:`UserError` line naming the file and saying why in
    this project's words (see :func:`_checkpoint_problem`); PyTorch's warnings about odd files are
    kept out of the output.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a user error here
        try:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else _checkpoint_problem(path, exc)
        except OSError as os_exc:  # the file went away or became unreadable meanwhile
            why = os_exc.strerror or type(os_exc).__name__
        raise UserError(f"cannot read checkpoint {path}: {why}; use a last.pt or best.pt written by "
                        "esg train") from None


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def reduce_values(values: list[float], dist: Dist, device: torch.device) -> list[float]:
    if dist.world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return t.tolist()


def gather_rng(dist: Dist) -> list[dict[str, Any]]:
    """Every rank's RNG state (rank 0 stores them all, so each rank restores its own)."""
    state = rng_state()
    if dist.world == 1:
        return [state]
    states: list[Any] = [None] * dist.world
    torch.distributed.all_gather_object(states, state)
    return states

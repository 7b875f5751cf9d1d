"""Handing freed heap memory back to the operating system at phase boundaries.

A training step frees its activations, but glibc's allocator keeps the freed pages of its heap
(most activations are below its mmap threshold, which it raises as large blocks are freed), so the
process's resident memory stays at the step's peak. The next phase (the DPO reference pre-pass, a
round of games, a tournament) then adds its own working set on top of pages nobody uses. Measured
on the quickstart's pairs (SmolLM2-135M, bf16): after 30 DPO steps of 4 states the process held
1.80 GiB; the reference pre-pass of the next iteration's pairs peaked at 2.12 GiB, and at 1.66 GiB
with the heap trimmed first. No allocator option does this at a chosen moment
(``MALLOC_TRIM_THRESHOLD_`` only trims the heap's top), so :func:`release_freed_memory` calls glibc's
``malloc_trim``. The pages given back are faulted in again by the next phase (the quickstart: 1.5 M
more page faults, about 5 s more system time in a 4.5-minute run).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

__all__ = ["release_freed_memory"]


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or None where the C library has none (macOS, musl, Windows)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    trim = getattr(libc, "malloc_trim", None) if libc is not None else None
    if trim is not None:
        trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_freed_memory() -> bool:
    """Return the heap's free pages to the operating system (a few milliseconds). Call it between
    phases, not inside a hot loop. Returns whether the C library could (glibc only)."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


#: glibc's tunable that backs malloc's heap and its large blocks with transparent huge pages.
HUGE_PAGE_TUNABLE = "glibc.malloc.hugetlb=1"
_THP_ENABLED = "/sys/kernel/mm/transparent_hugepage/enabled"


def glibc_has_hugetlb_tunable() -> bool:
    """Whether the C library is glibc 2.35 or later (the first with ``glibc.malloc.hugetlb``)."""
    import platform

    lib, version = platform.libc_ver()
    try:
        return lib == "glibc" and tuple(int(p) for p in version.split(".")[:2]) >= (2, 35)
    except ValueError:
        return False


def huge_page_environ(environ: dict[str, str], thp_path: str = _THP_ENABLED) -> dict[str, str] | None:
    """The environment a process should restart with so that glibc's malloc asks for transparent huge
    pages, or None where that changes nothing or cannot work.

    With 4 KiB pages every fresh megabyte an activation takes is 256 page faults (about 4.5 us each
    here, most of it the kernel zeroing the page): a DPO step of 4 states on SmolLM2 faulted in
    about 50,000 pages, and a first batch at a new size ran its 2 MB copies at 2.4 ms against 80 us
    once the pages were there (torch.profiler). With the tunable the same steps took 130 K page
    faults a run instead of 870-990 K, and 1.68 s a step against 1.87 s (five interleaved rounds of
    12 steps). glibc reads tunables only when a process starts, so the command line restarts itself
    with it (:mod:`cli`): only on glibc 2.35 or later, only where the kernel's THP mode is
    ``madvise`` (``always`` needs nothing, ``never`` cannot help), never when ``GLIBC_TUNABLES``
    already names the tunable, and never with ``LIGHTSPIEL_HUGE_PAGES=0``."""
    import sys

    if environ.get("LIGHTSPIEL_HUGE_PAGES", "1") in ("0", "restarted") or not sys.platform.startswith(
        "linux"
    ):
        return None  # off, or this process is the restart (a loader that drops GLIBC_TUNABLES: no loop)
    current = environ.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb" in current:
        return None
    if not glibc_has_hugetlb_tunable():
        return None
    try:
        with open(thp_path) as f:
            if "[madvise]" not in f.read():
                return None
    except OSError:
        return None
    env = dict(environ)
    env["GLIBC_TUNABLES"] = f"{current}:{HUGE_PAGE_TUNABLE}" if current else HUGE_PAGE_TUNABLE
    env["LIGHTSPIEL_HUGE_PAGES"] = "restarted"
    return env

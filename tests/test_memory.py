"""Freed heap memory goes back to the operating system at phase boundaries."""

import gc
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from modules.memory import (
    HUGE_PAGE_TUNABLE,
    _malloc_trim,
    glibc_has_hugetlb_tunable,
    huge_page_environ,
    release_freed_memory,
)

ROOT = Path(__file__).resolve().parents[1]


def _rss_mib() -> float:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS")) / 1024


@pytest.mark.skipif(_malloc_trim() is None, reason="glibc's malloc_trim is not available here")
def test_freed_activations_leave_the_process_once_released():
    """The pattern of a training phase: many medium tensors (below glibc's mmap threshold once it has
    risen, so they come from the heap) between survivors; after they are freed the process still
    holds their pages (holes inside the heap, which freeing cannot shrink), and releasing hands
    them back."""
    big = torch.ones(8 << 20, dtype=torch.uint8)  # an 8 MiB block, mmapped; freeing it raises the threshold
    del big
    chunks, keep = [], []
    for _ in range(200):  # 200 MiB of activations, each followed by a survivor of the same size
        chunks.append(torch.ones(1 << 20, dtype=torch.uint8))
        keep.append(torch.ones(1 << 20, dtype=torch.uint8))
    held = _rss_mib()
    del chunks
    gc.collect()
    still = _rss_mib()
    assert release_freed_memory()
    after = _rss_mib()
    assert held - still < 50  # freeing alone gives (almost) nothing back
    assert still - after > 150  # releasing gives the 200 MiB back
    assert sum(int(k[0]) for k in keep) == 200


def _thp(tmp_path, mode: str) -> str:
    path = tmp_path / "enabled"
    path.write_text(" ".join(f"[{m}]" if m == mode else m for m in ("always", "madvise", "never")) + "\n")
    return str(path)


needs_glibc_235 = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not glibc_has_hugetlb_tunable(), reason="glibc 2.35 or later only"
)


@needs_glibc_235
def test_huge_pages_are_asked_for_only_where_they_change_something(tmp_path):
    madvise = _thp(tmp_path, "madvise")
    env = huge_page_environ({"PATH": "/bin"}, madvise)
    assert env == {"PATH": "/bin", "GLIBC_TUNABLES": HUGE_PAGE_TUNABLE, "LIGHTSPIEL_HUGE_PAGES": "restarted"}
    # the restarted process never restarts again, even if the loader dropped the tunable
    assert huge_page_environ({"LIGHTSPIEL_HUGE_PAGES": "restarted"}, madvise) is None
    # another tunable the user set stays
    env = huge_page_environ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, madvise)
    assert env["GLIBC_TUNABLES"] == f"glibc.malloc.arena_max=2:{HUGE_PAGE_TUNABLE}"
    assert (
        huge_page_environ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, madvise) is None
    )  # the user's choice
    assert huge_page_environ({"LIGHTSPIEL_HUGE_PAGES": "0"}, madvise) is None
    assert huge_page_environ({}, _thp(tmp_path, "always")) is None  # the kernel does it already
    assert huge_page_environ({}, _thp(tmp_path, "never")) is None  # it cannot
    assert huge_page_environ({}, str(tmp_path / "missing")) is None


def _child_environ_while_running(env: dict[str, str]) -> set[str]:
    """Every GLIBC_TUNABLES value ``python -m cli fit --help`` runs with (the restart keeps the pid)."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "fit", "--help"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        seen = set()
        while proc.poll() is None:
            try:
                with open(f"/proc/{proc.pid}/environ", "rb") as f:
                    entries = f.read().split(b"\0")
                seen |= {e.decode() for e in entries if e.startswith(b"GLIBC_TUNABLES=")}
            except OSError:  # caught between the exec and the look, or just ended
                pass
            time.sleep(0.02)
        err.seek(0)
        assert proc.returncode == 0, err.read().decode()[-2000:]
    return seen


@pytest.mark.skipif(
    huge_page_environ({}) is None, reason="no restart here: not glibc 2.35+, or THP not in madvise mode"
)
def test_the_command_line_restarts_itself_with_huge_pages(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "LIGHTSPIEL_HUGE_PAGES")}
    assert f"GLIBC_TUNABLES={HUGE_PAGE_TUNABLE}" in _child_environ_while_running(env)
    assert _child_environ_while_running({**env, "LIGHTSPIEL_HUGE_PAGES": "0"}) == set()


@pytest.mark.parametrize(
    ("argv0", "orig_argv", "restarts"),
    [
        ("-m", ["python", "-m", "cli", "fit"], True),
        ("-m", ["python", "-X", "utf8", "-mcli", "fit"], True),
        ("-m", ["python", "-m", "cli.__main__", "fit"], False),  # a Lightning DDP child
        ("/venv/bin/pytest", ["python", "-m", "pytest", "-m", "cli"], False),  # a marker expression
        ("-m", ["python", "-m", "pytest", "-m", "cli"], False),
    ],
)
def test_only_the_command_line_itself_restarts(monkeypatch, argv0, orig_argv, restarts):
    import cli

    monkeypatch.setattr(sys, "argv", [argv0, *orig_argv[3:]])
    monkeypatch.setattr(sys, "orig_argv", orig_argv)
    assert cli._run_as_module() is restarts

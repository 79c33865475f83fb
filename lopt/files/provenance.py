"""Where a benchmark result came from: lopt version, git commit, command, wall time, machine."""
from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import subprocess

import jax


def git_commit(path: str | None = None) -> dict:
    """The commit checked out at ``path`` (the lopt source tree by default) and whether the
    tree had uncommitted changes; ``None`` values outside a git checkout."""
    path = path or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    def git(*args):
        return subprocess.run(["git", "-C", path, *args], capture_output=True, text=True,
                              timeout=30, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        # Result files written by the run itself are not a change to the code that made them.
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", "lopt"))
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def machine() -> str:
    """One line: CPU count, platform and the jax backend's devices."""
    devices = jax.devices()
    return (f"{os.cpu_count()} CPU cores, {platform.system()} {platform.machine()}, "
            f"jax {jax.__version__} on {len(devices)} {devices[0].platform} device(s)")


def provenance(command: str, wall_s: float, code: dict | None = None) -> dict:
    """The record every committed result carries; ``code``: ``git_commit()`` taken when the
    run started (the code that ran), taken now when not given."""
    return {"lopt_version": importlib.metadata.version("lopt"), **(code or git_commit()),
            "command": command,
            "wall_s": round(float(wall_s), 1), "machine": machine(),
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "python": platform.python_version(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def markdown_line(record: dict) -> str:
    """The provenance as one markdown line for the top of a results.md."""
    commit = (record["commit"] or "unknown")[:10] + (" (uncommitted changes)"
                                                     if record.get("dirty") else "")
    flags = f" with XLA_FLAGS='{record['xla_flags']}'" if record.get("xla_flags") else ""
    return (f"Made by `{record['command']}`{flags} in {record['wall_s']:.0f} s on "
            f"{record['machine']}; "
            f"lopt {record['lopt_version']}, commit {commit}, {record['date']}."
            + _resumed(record))


def _resumed(record: dict) -> str:
    """What a resumed run reused: how many stages, and the invocations that made them."""
    stages = record.get("stages") or {}
    cached = sum(s["cached"] for s in stages.values())
    if not cached:
        return ""
    earlier = record.get("earlier_invocations") or []
    commits = sorted({(r.get("commit") or "unknown")[:10] for r in earlier}
                     | {(s["commit"] or "")[:10] for s in stages.values()
                        if s["cached"] and s["commit"]})
    # Invocations stopped before they wrote a record (a kill, a stall) still made stages: their
    # own times count too.
    total = record["wall_s"] + max(sum(r.get("wall_s") or 0.0 for r in earlier),
                                   sum(s.get("wall_s") or 0.0 for s in stages.values()
                                       if s["cached"]))
    # A compiler flag changes the compiled code, so numbers made under one are named with it.
    flags = sorted({r["xla_flags"] for r in earlier if r.get("xla_flags")})
    return (f" It resumed {cached} of {len(stages)} stages from earlier invocations"
            + (f" (commit {', '.join(commits)})" if commits else "")
            + (f", made with XLA_FLAGS='{' '.join(flags)}'" if flags else "")
            + (f"; {total:.0f} s in all" if earlier else "")
            + "; `results.json` lists every stage and invocation.")

"""Learned rules update tensor-parallel (sharded) parameters: on 2 and 4 CPU devices the update
equals the unsharded one, keeps the parameters' shardings, and a per-coordinate rule moves no
whole tensor between devices (only per-tensor statistics are reduced)."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

from lopt.rules import LEARNED

WORKER = str(pathlib.Path(__file__).with_name("sharded_worker.py"))
# Celo2 orthogonalizes each matrix's step with Newton–Schulz iterations (its paper's update),
# products of the whole matrix: it gathers matrices, and nothing else.
WHOLE_MATRIX = {"celo2"}
SMALLEST_MATRIX = 48 * 32


@pytest.fixture(scope="module")
def rows():
    # The worker keeps the suite's XLA flags (faster compiles) and adds the device count.
    proc = subprocess.run([sys.executable, WORKER, "2", "4"], env=dict(os.environ),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def _size(dims):
    n = 1
    for d in dims:
        n *= d
    return n


@pytest.mark.devices
def test_every_learned_rule_on_sharded_parameters(rows):
    assert {(r["rule"], r["devices"]) for r in rows} == \
        {(name, k) for name in LEARNED for k in (2, 4)}
    for r in rows:
        where = f"{r['rule']} on {r['devices']} devices"
        # Equal to the unsharded update up to the order of the reductions.
        assert r["error"] <= 1e-5, where
        assert all(r["kept"].values()), (where, r["kept"])
        if r["rule"] in WHOLE_MATRIX:
            assert all(kind == "all-gather" or _size(dims) < SMALLEST_MATRIX
                       for kind, dims in r["collectives"]), where
            continue
        # Per-tensor statistics (RMS, Adafactor row and column moments) reduce with small
        # collectives; no whole tensor is gathered.
        assert not [c for c in r["collectives"] if c[0] == "all-gather"], (where, r["collectives"])
        assert all(_size(dims) < SMALLEST_MATRIX for _, dims in r["collectives"]), \
            (where, r["collectives"])

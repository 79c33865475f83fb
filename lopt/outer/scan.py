"""The inner unroll's ``lax.scan``: what its reverse mode stores (every step, each step's
carry, or nested segments) chosen by the carry's size and the unroll's length."""
from __future__ import annotations

import jax

REMAT = ("auto", "none", "step", "nested")
# "auto" stores everything while the K carries are under STORE_ALL_BYTES, then nests from
# NESTED_FROM steps on (rematerializes per step below): measured in benchmarks/perf.
STORE_ALL_BYTES, NESTED_FROM = 64 * 2**20, 33


# A run batch this small steps in a few microseconds, where the loop's own cost per iteration
# shows: two inner steps per iteration then ran the 10-d quadratic's PES outer step 1.23-1.27x
# faster, the 16->32->4 MLP's 0.97-1.02x (lopt bench throughput's configuration, compared
# within one process), at the same compile time. The values are those of one step per
# iteration up to float rounding.
SMALL_CARRY_BYTES = 1 << 20
SMALL_CARRY_UNROLL = 2


def segment_length(num_steps: int) -> int:
    """The largest divisor of ``num_steps`` not above its square root."""
    return max(d for d in range(1, int(num_steps**0.5) + 1) if num_steps % d == 0)


def scan_steps(body, carry, num_steps: int, remat: str = "none"):
    """``lax.scan(body, carry, None, num_steps)``, with what reverse mode stores chosen by
    ``remat`` (Griewank & Walther's checkpointing, "Algorithm 799: revolve", 2000):

    - ``"none"``: every step's intermediates: memory grows as K × (carry + intermediates);
    - ``"step"``: each step is rematerialized from its carry: K carries are stored;
    - ``"nested"``: the K steps are cut into segments of s ≈ √K (``segment_length``), only the
      carry at each segment's start is stored and a segment is re-run step by step when the
      backward pass reaches it: K/s + s carries, at the price of a second forward pass;
    - ``"auto"``: ``"none"`` while K carries take under ``STORE_ALL_BYTES``, else ``"nested"``
      from ``NESTED_FROM`` steps on and ``"step"`` below. On CPU, recomputing a small step
      costs more than storing it (TBPTT of the per-parameter MLP on a 676-parameter MLP,
      truncation 50: 2.3× slower with "step", measured while choosing these thresholds),
      while for a large recurrent state storing everything costs memory traffic as well as
      memory (the L2L LSTM on digits_mlp: "step" 20-45% faster than "none",
      benchmarks/perf).
    The values are the same in all; only memory and time differ.
    """
    if remat not in REMAT:
        raise ValueError(f"remat must be one of {list(REMAT)}, got {remat!r}")
    carry_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(carry))
    if remat == "auto":
        if num_steps * carry_bytes < STORE_ALL_BYTES:
            remat = "none"
        else:
            remat = "nested" if num_steps >= NESTED_FROM else "step"
    if remat == "none":
        unroll = SMALL_CARRY_UNROLL if carry_bytes < SMALL_CARRY_BYTES else 1
        return jax.lax.scan(body, carry, None, length=num_steps, unroll=unroll)
    step = jax.checkpoint(body, prevent_cse=False)
    seg = segment_length(num_steps)
    if remat == "step" or seg == 1:
        return jax.lax.scan(step, carry, None, length=num_steps)

    def segment(c, _):
        return jax.lax.scan(step, c, None, length=seg)

    carry, out = jax.lax.scan(jax.checkpoint(segment, prevent_cse=False), carry, None,
                              length=num_steps // seg)
    return carry, jax.tree.map(lambda o: o.reshape((num_steps,) + o.shape[2:]), out)

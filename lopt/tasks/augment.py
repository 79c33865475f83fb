"""Task-family wrappers that widen a training distribution: RNNprop's random scaling and convex
combination (Lv, Chen & Zhang 2017, Wang, Sun & Xu 2019), parameter reparameterization, reduced
batch sizes and label noise."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from lopt.tasks.base import TaskFamily, map_params

LEVELS = ("global", "tensor", "parameter")


def _scales(key, shapes, level: str, low: float, high: float):
    """exp(U(low, high)) per instance (global), per leaf (tensor) or per coordinate."""
    leaves, treedef = jax.tree.flatten(shapes)
    keys = jax.random.split(key, len(leaves))
    if level == "global":
        s = jnp.exp(jax.random.uniform(keys[0], (), minval=low, maxval=high))
        out = [jnp.full(leaf.shape, s, leaf.dtype) for leaf in leaves]
    else:
        out = [jnp.exp(jax.random.uniform(k, leaf.shape if level == "parameter" else (), leaf.dtype,
                                          low, high)) * jnp.ones(leaf.shape, leaf.dtype)
               for k, leaf in zip(keys, leaves)]
    return jax.tree.unflatten(treedef, out)


def _rescaled(family: TaskFamily, level: str, low: float, high: float, name: str) -> TaskFamily:
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}; got {level!r}")
    if not high > low:
        raise ValueError(f"high must be greater than low, got low={low}, high={high}")

    def sample(key):
        k_inner, k_scale = jax.random.split(key)
        inner_cfg = family.sample(k_inner)
        shapes = jax.eval_shape(family.build(inner_cfg).init, jax.random.PRNGKey(0))
        return {"inner": inner_cfg, "scale": _scales(k_scale, shapes, level, low, high)}

    def build(cfg):
        inner = family.build(cfg["inner"])
        scale = cfg["scale"]
        return map_params(inner,
                          init=lambda key: jax.tree.map(jnp.divide, inner.init(key), scale),
                          to_inner=lambda p: jax.tree.map(lambda c, x: c.astype(x.dtype) * x,
                                                          scale, p))

    return dataclasses.replace(family, sample=sample, build=build, name=name)


def random_scaling(family: TaskFamily, low: float = -3.0, high: float = 3.0) -> TaskFamily:
    """f_c(w) = f(c ⊙ w), with every parameter coordinate's c = exp(U(low, high)) drawn per
    instance; the instance starts at w₀ / c, so c ⊙ w starts where the unscaled task does.

    Wang, Sun & Xu 2019's "random scaling": the optimizer never sees the same curvature scale twice,
    which pushes it towards scale-invariant behaviour.
    """
    return _rescaled(family, "parameter", low, high, f"{family.name}_rescaled")


def reparameterize(family: TaskFamily, level: str = "tensor", decades: float = 3.0) -> TaskFamily:
    """θ = s ⊙ φ: the optimizer trains φ, the task sees s ⊙ φ, and φ starts at θ₀ / s. s is
    log-uniform over ``decades`` decades centred on 1, drawn once per instance at the
    ``global``, per-``tensor`` or per-``parameter`` level. Gradients in φ are s times those in
    θ, so a rule trained on this sees every gradient scale (as in recent learned-optimizer
    meta-training)."""
    if not decades > 0:
        raise ValueError(f"decades must be a positive number; got {decades!r}")
    half = 0.5 * decades * float(jnp.log(10.0))
    return _rescaled(family, level, -half, half, f"{family.name}_reparam_{level}{decades:g}")


def with_convex(family: TaskFamily, dim: int = 10) -> TaskFamily:
    """F(w, θ) = f(w) + g(θ), g(θ) = ‖Aθ − b‖² / dim a random convex quadratic on ``dim`` extra
    parameters (A, b ~ N(0, 1) per instance): Wang, Sun & Xu 2019's "combination with a convex
    function", which adds well-conditioned coordinates to every training problem."""
    if int(dim) < 1:
        raise ValueError(f"dim must be a positive integer, got {dim}")

    def sample(key):
        k_inner, k_a, k_b = jax.random.split(key, 3)
        return {"inner": family.sample(k_inner), "A": jax.random.normal(k_a, (dim, dim)),
                "b": jax.random.normal(k_b, (dim,))}

    def build(cfg):
        inner = family.build(cfg["inner"])

        def convex(params):
            r = cfg["A"] @ params["convex"] - cfg["b"]
            return jnp.sum(r**2) / dim

        def init(key):
            k_task, k_theta = jax.random.split(key)
            return {"task": inner.init(k_task), "convex": 0.1 * jax.random.normal(k_theta, (dim,))}

        return map_params(inner, init=init, to_inner=lambda p: p["task"], extra_loss=convex)

    return dataclasses.replace(family, sample=sample, build=build,
                               name=f"{family.name}_plus_convex")


def _has_field(cfg, field) -> bool:
    return isinstance(cfg, dict) and (field in cfg or _has_field(cfg.get("inner"), field))


def _edited(cfg, field, value_fn):
    cfg = dict(cfg)
    if field in cfg:
        cfg[field] = value_fn(cfg[field])
    else:  # the field sits in a wrapped family's cfg
        cfg["inner"] = _edited(cfg["inner"], field, value_fn)
    return cfg


def _edit_cfg(family: TaskFamily, field: str, what: str, edit, name: str) -> TaskFamily:
    if not _has_field(jax.eval_shape(family.sample, jax.random.PRNGKey(0)), field):
        raise ValueError(f"{what} needs a dataset family with {field!r} in its cfg (lopt.tasks."
                         f"supervised); {family.name!r} has none")

    def sample(key):
        k_inner, k_edit = jax.random.split(key)
        return _edited(family.sample(k_inner), field, lambda old: edit(k_edit, old))

    return dataclasses.replace(family, sample=sample, name=name)


def reduced_batch(family: TaskFamily, low: int = 1) -> TaskFamily:
    """Per instance, only the first b examples of every minibatch count, b uniform in
    [low, batch size]: smaller, noisier batches without a new compile."""
    if int(low) < 1:
        raise ValueError(f"low must be a positive integer; got {low!r}")

    def edit(key, full):
        return jax.random.randint(key, (), jnp.minimum(low, full), full + 1).astype(jnp.int32)

    return _edit_cfg(family, "batch_keep", "reduced_batch", edit,
                     f"{family.name}_batch_from{int(low)}")


def label_noise(family: TaskFamily, low: float = 0.0, high: float = 0.3) -> TaskFamily:
    """Per instance, each train label is replaced by a uniformly drawn class with probability
    p ~ U(low, high) (fixed per example for the whole run); validation and test stay clean."""
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"label noise must satisfy 0 <= low <= high <= 1; got {(low, high)}")

    def edit(key, _):
        return jax.random.uniform(key, (), minval=low, maxval=high)

    return _edit_cfg(family, "label_noise", "label_noise", edit,
                     f"{family.name}_label_noise{low:g}-{high:g}")


def gradient_noise(family: TaskFamily, sigma: float = 0.1) -> TaskFamily:
    """Wichrowska et al.'s noisy problems: adds σ⟨ε, θ⟩ with ε ~ N(0, I) fresh from each loss
    key, so every gradient gets zero-mean N(0, σ²) noise while the expected loss is unchanged."""
    if not sigma > 0:
        raise ValueError(f"sigma must be a positive number; got {sigma!r}")

    def build(cfg):
        inner = family.build(cfg)

        def noisy(fn):
            def loss(params, key):
                leaves = jax.tree.leaves(params)
                keys = jax.random.split(jax.random.fold_in(key, 0x401CE), len(leaves))
                dot = sum(jnp.sum(jax.random.normal(k, x.shape, x.dtype) * x)
                          for k, x in zip(keys, leaves))
                return fn(params, key) + sigma * dot
            return loss

        return dataclasses.replace(inner, loss=noisy(inner.loss))

    return dataclasses.replace(family, build=build, name=f"{family.name}_noise{sigma:g}")


def loss_scale(family: TaskFamily, scale: float) -> TaskFamily:
    """The family's training and validation losses times a constant ``scale``: the same
    problem at a loss scale far from 1 (so its gradients are ``scale`` times as large), which a
    learned rule must handle without a retuned learning rate."""
    if not (isinstance(scale, (int, float)) and 0 < scale < float("inf")):
        raise ValueError(f"scale must be a positive finite number; got {scale!r}")

    def scaled(fn):
        return None if fn is None else (lambda *args: scale * fn(*args))

    def build(cfg):
        inner = family.build(cfg)
        with_state = inner.loss_and_state
        return dataclasses.replace(
            inner, loss=scaled(inner.loss), valid_loss=scaled(inner.valid_loss),
            valid_loss_with_state=scaled(inner.valid_loss_with_state),
            loss_and_state=None if with_state is None else (
                lambda *args: (lambda out: (scale * out[0], out[1]))(with_state(*args))))

    return dataclasses.replace(family, build=build, name=f"{family.name}_loss_x{scale:g}")


PRECISIONS = {"bf16": jnp.bfloat16, "f16": jnp.float16}


def low_precision(family: TaskFamily, dtype: str = "bf16") -> TaskFamily:
    """The task with its parameters stored, and its activations computed, in ``dtype``
    (bfloat16 by default); every loss it returns is float32.

    The optimizer sees low-precision parameters and gradients; lopt's rules keep their state
    and do their arithmetic in float32 and cast each step back to the parameters' dtype
    (``tests/rules/test_state_dtypes.py``), as mixed-precision training does. Activations
    follow the parameters: supervised tasks cast each input batch to the parameters' dtype
    and their logits back to float32 before the loss (``lopt.tasks.supervised``), and token
    models embed into it. learned_optimization's float-dtype task augmentation, for
    meta-training and meta-testing in bf16."""
    if dtype not in PRECISIONS:
        raise ValueError(f"dtype must be one of {', '.join(PRECISIONS)}; got {dtype!r}")
    low = PRECISIONS[dtype]

    def cast(tree):
        return jax.tree.map(lambda x: x.astype(low) if jnp.issubdtype(x.dtype, jnp.floating)
                            else x, tree)

    def f32(fn, has_state=False):
        if fn is None:
            return None
        if has_state:
            def with_state(*args):
                loss, state = fn(*args)
                return loss.astype(jnp.float32), state
            return with_state
        return lambda *args: jnp.asarray(fn(*args)).astype(jnp.float32)

    def build(cfg):
        inner = family.build(cfg)
        metrics = None if inner.test_metrics is None else (
            lambda *args: jax.tree.map(lambda v: jnp.asarray(v, jnp.float32),
                                       inner.test_metrics(*args)))
        return dataclasses.replace(
            inner, init=lambda key: cast(inner.init(key)), loss=f32(inner.loss),
            valid_loss=f32(inner.valid_loss), loss_and_state=f32(inner.loss_and_state, True),
            valid_loss_with_state=f32(inner.valid_loss_with_state), test_metrics=metrics)

    return dataclasses.replace(family, build=build, name=f"{family.name}_{dtype}")

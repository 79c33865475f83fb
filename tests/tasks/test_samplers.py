import jax
import jax.numpy as jnp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lopt.tasks import SAMPLERS, sample_spec
from lopt.tasks.samplers import CHOICES


def _field_values(spec):
    """Each declared choice field's value(s) in a spec (widths per layer, depth as a count)."""
    kw = spec.kwargs()
    out = {}
    for field in CHOICES[spec.kind]:
        if field in kw:
            out[field] = [kw[field]] if not isinstance(kw[field], tuple) else list(kw[field])
        elif field == "depth":
            layers = kw.get("hidden", kw.get("channels"))
            out[field] = [len(layers)]
        elif field == "width":
            out[field] = list(kw.get("hidden", kw.get("channels")))
    return out


@settings(max_examples=40, deadline=None)
@given(sampler=st.sampled_from(sorted(SAMPLERS)), seed=st.integers(0, 2**31 - 1))
def test_a_seed_gives_one_reproducible_spec_inside_the_declared_ranges(sampler, seed):
    spec = sample_spec(sampler, seed)
    assert spec == sample_spec(sampler, seed) and hash(spec) == hash(sample_spec(sampler, seed))
    for field, values in _field_values(spec).items():
        allowed = CHOICES[sampler][field]
        if field == "heads":  # heads must divide the width; 1 is the fallback
            allowed = allowed + (1,)
        assert all(v in allowed for v in values), (field, values, allowed)


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_seeds_cover_every_declared_choice(sampler):
    seen = {field: set() for field in CHOICES[sampler]}
    specs = {sample_spec(sampler, seed) for seed in range(300)}
    assert len(specs) > 30  # seeds give varied structures
    for spec in specs:
        for field, values in _field_values(spec).items():
            seen[field].update(values)
    for field, options in CHOICES[sampler].items():
        assert seen[field] == set(options), (field, seen[field], options)


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_sampled_specs_build_families_whose_cfg_varies_per_instance(sampler):
    spec = sample_spec(sampler, 3)
    family = spec.family()
    assert family.name == spec.name or sampler == "quadratic"
    cfgs = [family.sample(jax.random.PRNGKey(i)) for i in range(2)]
    leaves = [jax.tree.leaves(c) for c in cfgs]
    assert any(not jnp.array_equal(a, b) for a, b in zip(*leaves))

    def loss(key):
        task = family.build(family.sample(key))
        return task.train_loss(task.init(key), task.new_state(key), key)[0]

    assert jax.eval_shape(loss, jax.random.PRNGKey(0)).shape == ()


def test_bad_sampler_or_seed_is_one_line():
    with pytest.raises(ValueError, match="sampler must be one of"):
        sample_spec("densenet", 0)
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*31\)"):
        sample_spec("mlp", -1)


def test_a_seed_outside_a_jax_seed_s_range_is_refused():
    for seed in (2**31, -1, 1.5, True):
        with pytest.raises(ValueError, match=r"sampler seed must be an integer in \[0, 2\*\*31\)"):
            sample_spec("mlp", seed)

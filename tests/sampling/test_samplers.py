"""The sampler interface (mpi_pymc.sampling.registry): the registry agrees with the CLI's names,
every backend is a SamplerBackend, and each runs through ChainGroupSampler returning the
documented sample stats. Tiny runs of a 2-D Gaussian: this checks the plumbing, not the
posteriors."""

from __future__ import annotations

import jax
import numpy as np
import pymc as pm
import pytest

from mpi_pymc.core import config
from mpi_pymc.model.compile import compile_model
from mpi_pymc.output import layout
from mpi_pymc.sampling import registry as samplers
from mpi_pymc.sampling.base import STAT_NAMES, SamplerBackend
from mpi_pymc.sampling.chain_group import ChainGroupSampler

CHAINS, TUNE, DRAWS = 2, 30, 7


@pytest.fixture(scope="module")
def compiled():
    with pm.Model() as model:
        pm.Normal("x", mu=[1.0, -2.0], sigma=[0.5, 3.0], shape=2)
    return compile_model(model, "float64")


def _config(sampler: str, chain_method: str = "vectorized", **extra) -> config.RunConfig:
    return config.RunConfig(
        model_path="m.py",
        sampler=sampler,
        chain_method=chain_method,
        tune=TUNE,
        draws=DRAWS,
        chunk_draws=5,
        **extra,
    )


def test_the_registry_names_the_cli_samplers():
    assert tuple(samplers.BACKENDS) == config.SAMPLERS
    with pytest.raises(KeyError, match="unknown sampler 'nope'"):
        samplers.backend_for("nope")


def test_the_documented_stats_are_the_stored_ones():
    assert set(STAT_NAMES) == set(layout.STAT_DTYPES)


@pytest.mark.parametrize("name", config.SAMPLERS)
def test_every_backend_is_a_sampler_backend(name, compiled):
    backend = samplers.backend_for(name)(compiled, _config(name))
    assert isinstance(backend, SamplerBackend)
    assert isinstance(backend.warmup_in_chunks, bool)
    # The warmup member the sampler does not use says so, rather than doing something else.
    unused = backend.warmup if backend.warmup_in_chunks else backend.warmup_step
    with pytest.raises(NotImplementedError):
        unused(None, compiled.data)


def _run(compiled, run_config: config.RunConfig):
    sampler = ChainGroupSampler(compiled, run_config)
    keys = np.stack([np.asarray(jax.random.PRNGKey(c), np.uint32) for c in range(CHAINS)])
    starts = np.tile(compiled.initial_flat, (CHAINS, 1)) + np.linspace(-0.5, 0.5, CHAINS)[:, None]
    state = sampler.init(keys, starts)
    assert sampler.warmup_in_chunks == sampler.backend.warmup_in_chunks
    if sampler.warmup_in_chunks:
        state = sampler.warmup(sampler.warmup(state, 20), 20)  # the second stops at tune
    else:
        state = sampler.warmup(state, TUNE)
    assert sampler.iterations(state).tolist() == [TUNE] * CHAINS
    state, first, stats = sampler.sample(state, 5)  # a whole chunk, then a shorter one
    state, second, more = sampler.sample(state, DRAWS - 5)
    assert sampler.iterations(state).tolist() == [TUNE + DRAWS] * CHAINS
    positions = np.concatenate([first, second], axis=1)
    stats = {k: np.concatenate([np.asarray(stats[k]), np.asarray(more[k])], 1) for k in stats}
    return positions, stats


@pytest.mark.parametrize(
    "name, chain_method, extra",
    [
        *[(name, "vectorized", {}) for name in config.SAMPLERS],
        ("nuts", "sequential", {}),
        ("hmc", "vectorized", {"adapt_group": 2}),
    ],
)
def test_a_short_run_returns_the_documented_stats(name, chain_method, extra, compiled):
    positions, stats = _run(compiled, _config(name, chain_method, **extra))
    assert positions.shape == (CHAINS, DRAWS, 2)
    assert np.all(np.isfinite(positions))
    assert set(stats) == set(STAT_NAMES)
    kinds = {"float": "f", "bool": "b", "int64": "i"}
    for key, value in stats.items():
        assert value.shape == (CHAINS, DRAWS), key
        assert value.dtype.kind == kinds[layout.STAT_DTYPES[key]], (key, value.dtype)
    assert np.all(stats["n_steps"] >= 1)
    assert np.all(stats["tree_depth"] >= 1)
    assert np.all(stats["step_size"] > 0)
    assert np.all((stats["acceptance_rate"] >= 0) & (stats["acceptance_rate"] <= 1))


# A checkpoint is a state's flattened leaves, in order, so a state's layout must not reorder
# them: these are the flat fields (da_mu ... uturn_final_count) of the states before the
# adaptations became sub-states, in the order checkpoints wrote them.
_KERNEL = [".i", ".position", ".logdensity", ".grad", ".rng_key", ".log_step_size"]
# The metric replaced the diagonal ``.inverse_mass_matrix`` (checkpoints of then cannot resume:
# restore_state refuses them with one line), and the window buffer came last.
_METRIC = [".metric.inv_diag", ".metric.vectors", ".metric.values"]
_BUFFER = [".buffer.positions", ".buffer.gradients", ".buffer.n"]
_TRIAL = [".trial.mode", ".trial.steps", ".trial.divergences", ".trial.iterations"]
_TRIAL += [".trial.diagonal_cost"]
_ADAPT = [".da.mu", ".da.hbar", ".da.log_avg", ".da.n", ".wf.n", ".wf.mean", ".wf.m2"]
CHECKPOINT_LEAVES = {
    "nuts": [*_KERNEL, *_METRIC, *_ADAPT, *_BUFFER, *_TRIAL],
    "hmc": [
        *_KERNEL,
        *_METRIC,
        ".trajectory",
        *_ADAPT,
        *[".uturn.mean", ".uturn.n", ".uturn.final_sum", ".uturn.final_n"],
        *_BUFFER,
    ],
}


@pytest.mark.parametrize("name", sorted(CHECKPOINT_LEAVES))
def test_kernel_states_keep_the_checkpoint_leaf_order(name, compiled):
    backend = samplers.backend_for(name)(compiled, _config(name))
    state = backend.init(jax.random.PRNGKey(0), compiled.initial_flat, compiled.data)
    paths = [
        jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(state)[0]
    ]
    assert paths == CHECKPOINT_LEAVES[name]


def test_a_checkpoint_of_an_older_state_layout_is_refused_in_one_line(compiled):
    """A NUTS checkpoint whose state has other leaves than this version's (here the last
    three missing) cannot resume: one line saying so and what to do, not a shape error."""
    from mpi_pymc.core.errors import UserError
    from mpi_pymc.driver.checkpointing import restore_state
    from mpi_pymc.output.checkpoint import Checkpoint

    backend = samplers.backend_for("nuts")(compiled, _config("nuts"))
    one = backend.init(jax.random.PRNGKey(0), compiled.initial_flat, compiled.data)
    state = jax.tree_util.tree_map(lambda leaf: leaf[None], one)  # a rank of one chain
    batched = [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(state)]
    chains = range(0, 1)
    assert restore_state(state, Checkpoint(batched, {}, chains), chains) is not None
    older = Checkpoint(batched[: len(CHECKPOINT_LEAVES["nuts"]) - 3], {}, chains)
    with pytest.raises(UserError, match="state layout .* without --resume"):
        restore_state(state, older, chains)

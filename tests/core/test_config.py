import pytest
from helpers import EIGHT_SCHOOLS

from mpi_pymc.core.config import (
    RunConfig,
    UserError,
    parse_model_spec,
    resolve_chain_method,
    validate,
)


def cfg(**kw):
    kw.setdefault("model_path", str(EIGHT_SCHOOLS))
    return RunConfig(**kw)


def test_model_spec_with_and_without_name():
    assert parse_model_spec("m.py") == ("m.py", None)
    assert parse_model_spec("dir/m.py:hier") == ("dir/m.py", "hier")
    assert parse_model_spec("C:/x/m.py") == ("C:/x/m.py", None)


def test_adapt_group_dividing_every_ranks_chains_is_accepted():
    assert validate(cfg(sampler="hmc", adapt_group=2, chains=12), 3).adapt_group == 2
    assert validate(cfg(sampler="hmc", adapt_group=4, chains_per_rank=8), 3).chains == 24


def test_defaults_resolve_chains_and_output():
    out = validate(cfg(), 2)
    assert out.chains == 4 and out.out == "eight_schools.h5"
    assert validate(cfg(), 6).chains == 6
    assert validate(cfg(chains_per_rank=3), 4).chains == 12


@pytest.mark.parametrize(
    "changes,needle",
    [
        ({"draws": 0}, "--draws must be a positive integer"),
        ({"draws": -5}, "--draws must be a positive integer"),
        ({"tune": -1}, "--tune"),
        (
            {"sampler": "gibbs"},
            "unknown --sampler 'gibbs': choose one of nuts, numpyro, blackjax, hmc",
        ),
        ({"chain_method": "parallel"}, "unknown --chain-method"),
        ({"precision": "float16"}, "unknown --precision"),
        ({"target_accept": 1.5}, "--target-accept"),
        ({"chains": 2}, "every rank needs at least one chain"),
        ({"chains": 4, "chains_per_rank": 1}, "not both"),
        ({"overwrite": True, "resume": True}, "contradict"),
        ({"adapt_group": 3}, "--adapt-group pools hmc's warmup; --sampler nuts"),
        ({"adapt_group": 3, "sampler": "hmc", "chain_method": "sequential"}, "sequential"),
        ({"adapt_group": 2, "sampler": "hmc", "chains": 9}, "gives 3 per rank"),
        ({"adapt_group": 2, "sampler": "hmc", "chains": 7}, "gives 2 or 3 per rank"),
        ({"model_path": "missing.py"}, "does not exist"),
        ({"model_path": "model.txt"}, "not a .py file"),
        ({"until_tail_ess": 100}, "--until-tail-ess is part of an --until-ess goal"),
        ({"until_ess": 400, "until_tail_ess": -1}, "--until-tail-ess must be 0"),
    ],
)
def test_bad_settings_name_the_option_and_the_fix(changes, needle):
    with pytest.raises(UserError, match=needle.replace("(", r"\(")):
        validate(cfg(**changes), 3)


def test_the_tail_goal_is_the_bulk_goal_unless_set():
    assert cfg().tail_goal is None
    assert cfg(until_ess=400).tail_goal == 400
    assert cfg(until_ess=400, until_tail_ess=0).tail_goal == 0
    assert validate(cfg(until_ess=400, until_tail_ess=100), 3).tail_goal == 100


def test_auto_chain_method_is_sequential_on_cpu_and_vectorized_on_gpu():
    assert validate(cfg(), 2).chain_method == "auto" and cfg().sampler == "nuts"
    assert resolve_chain_method(cfg(), "cpu").chain_method == "sequential"
    assert resolve_chain_method(cfg(), "gpu").chain_method == "vectorized"
    grouped = cfg(sampler="hmc", adapt_group=2)
    assert resolve_chain_method(grouped, "cpu").chain_method == "vectorized"
    for chosen in ("sequential", "vectorized"):
        for platform in ("cpu", "gpu"):
            assert resolve_chain_method(cfg(chain_method=chosen), platform).chain_method == chosen

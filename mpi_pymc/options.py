"""The options of ``run``, in one place for the two parsers that take them.

``python -m mpi_pymc run`` parses them into a RunConfig (cli.py); ``jobscript`` accepts the same
options and writes them into the job script's ``RUN_OPTIONS`` (jobscript.py).
"""

from __future__ import annotations

import argparse

from mpi_pymc.core.config import DEFAULT_UNTIL_RHAT


def _positive_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got '{text}'") from None


def add_run_options(run: argparse.ArgumentParser) -> None:
    g = run.add_argument_group("chains and draws")
    g.add_argument("--draws", type=_positive_int, default=1000, help="draws per chain (1000)")
    g.add_argument("--tune", type=_positive_int, default=1000, help="warmup steps per chain (1000)")
    chains = g.add_mutually_exclusive_group()
    chains.add_argument(
        "--chains",
        type=_positive_int,
        help="total chains, split over ranks (default max(4, ranks))",
    )
    chains.add_argument("--chains-per-rank", type=_positive_int, help="chains on each rank")
    g.add_argument("--seed", type=_positive_int, help="root seed (default: drawn and printed)")
    g = run.add_argument_group("stopping (--draws is the cap)")
    g.add_argument(
        "--until-ess",
        type=_positive_int,
        metavar="N",
        help="stop after the first check where min bulk and tail ESS reach N and max R-hat is "
        "at most --until-rhat; the file then holds exactly the draws taken",
    )
    g.add_argument(
        "--until-tail-ess",
        type=_positive_int,
        metavar="M",
        help="the tail-ESS part of --until-ess (default: N; 0: bulk ESS and R-hat only, for "
        "means and standard deviations rather than interval ends)",
    )
    g.add_argument(
        "--until-rhat",
        type=float,
        default=DEFAULT_UNTIL_RHAT,
        help=f"R-hat bound of --until-ess ({DEFAULT_UNTIL_RHAT})",
    )
    g.add_argument(
        "--max-time",
        metavar="DURATION",
        help="stop with a checkpoint before this much wall time has passed (seconds, MM:SS, "
        "HH:MM:SS or D-HH:MM:SS); inside a SLURM job its end time also applies, 30 s early. "
        "Continue with --resume",
    )
    g = run.add_argument_group("sampler")
    g.add_argument(
        "--sampler",
        default="nuts",
        help="nuts (the project's NUTS, default: Stan's algorithm and warmup, one loop of "
        "leapfrogs per transition), numpyro (numpyro's NUTS), blackjax (blackjax's NUTS) or hmc "
        "(adaptive jittered HMC: fixed-length trajectories learned in warmup; lockstep-friendly "
        "for many chains per GPU)",
    )
    g.add_argument(
        "--chain-method",
        default="auto",
        help="auto (default: sequential on a CPU rank, where vectorized NUTS chains wait for the "
        "deepest tree; vectorized on a GPU, and with --adapt-group), vectorized (vmap a rank's "
        "chains) or sequential (one after another)",
    )
    g.add_argument(
        "--target-accept",
        type=float,
        default=0.8,
        help="target acceptance of step-size adaptation (0.8)",
    )
    g.add_argument(
        "--max-tree-depth",
        type=_positive_int,
        default=10,
        help="NUTS max depth (10); hmc: at most 2**depth steps",
    )
    g.add_argument(
        "--metric",
        default="auto",
        help="mass matrix of nuts and hmc: auto (default: NUTS tries the low-rank metric for "
        "one warmup window and keeps it only where its trees were at least 2x cheaper than the "
        "diagonal's; hmc: low rank with --adapt-group, else diagonal), diag (Stan's window "
        "variance), low_rank (that variance corrected in up to 16 directions by nutpie's Fisher "
        "estimate from the window's draws and gradients) or dense (every direction: O(d^2) per "
        "leapfrog, for small models); with --adapt-group the group's chains estimate it together",
    )
    g.add_argument(
        "--adapt-group",
        type=_positive_int,
        default=1,
        help="hmc: chains that pool their warmup adaptation, so they share step size, mass "
        "matrix and trajectory length and step in lockstep (1: each chain adapts alone); must "
        "divide every rank's chains",
    )
    g.add_argument("--precision", default="float64", help="float64 (default) or float32")
    g.add_argument(
        "--check-logp",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="before sampling, compare the JAX log-density with PyTensor's own at the initial "
        "point and 3 jittered points; a disagreement stops the run naming the variable (on)",
    )
    g = run.add_argument_group("devices and output")
    g.add_argument(
        "--data-shards",
        type=int,
        default=1,
        help="split the observed rows (and the data arrays over them) into S shards, one per "
        "device of a rank: the log-density is the prior once plus the shards' likelihoods, "
        "summed inside the compiled program at every leapfrog. Each rank needs exactly S "
        "devices (JAX_NUM_CPU_DEVICES=S or --gpus-per-rank S); a model whose likelihood is not "
        "a sum over independent rows is refused (1: no shards)",
    )
    g.add_argument(
        "--data-row-dim",
        help="with --data-shards: the dim the rows are over (default: the observed variables' "
        "leading dimension)",
    )
    g.add_argument(
        "--gpus-per-rank",
        type=_positive_int,
        help="GPUs each rank binds (default 1 when GPUs are visible, else CPU; 0 forces CPU). "
        "A rank with k GPUs splits its chains over all k (fewer if it has fewer chains): "
        "vectorized, each GPU vmaps its own block of chains; sequential, chain i runs on GPU "
        "i %% k. A CPU rank started with JAX_NUM_CPU_DEVICES=k does the same over k host "
        "devices",
    )
    g.add_argument("--out", help="output HDF5 file (default MODEL.h5)")
    g.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    g.add_argument(
        "--resume",
        action="store_true",
        help="continue the run checkpointed in OUT.ckpt (same model and options; any rank count)",
    )
    g.add_argument(
        "--chunk-draws",
        type=_positive_int,
        default=100,
        help="draws per chunk: written to disk and reported after each (100)",
    )
    g.add_argument("--io", default="auto", help="auto (default), mpio (parallel HDF5) or shards")
    g.add_argument(
        "--pack",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="shards writer: when the run completes, copy the shards into OUT so it is one file "
        "that can be copied alone (on; about 4 s/GB here; not above 32 GiB, or without the space "
        "for the copy: the last line then says so); --no-pack keeps OUT.parts/ beside OUT, and "
        "`python -m mpi_pymc pack OUT` packs it later",
    )
    g.add_argument(
        "--log-likelihood",
        action="store_true",
        help="when the draws are complete, add the log_likelihood group (as the postprocess "
        "command does: every rank for its own chains)",
    )
    g.add_argument(
        "--posterior-predictive",
        action="store_true",
        help="when the draws are complete, add the posterior_predictive group",
    )
    g.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress on rank 0, from the first second: the start-up phases by name (starting "
        "ranks, loading the model, compiling, warming up) with their elapsed time, then the bar "
        "(default: on when stderr is a terminal)",
    )
    g.add_argument(
        "--summary",
        default="table",
        help="what rank 0 prints when the run completes: table (default: the per-parameter "
        "table, worst R-hat first, and its warnings) or warnings (as pm.sample: its "
        "divergence, R-hat and ESS warnings and one closing line; what sample() prints)",
    )
    g.add_argument(
        "--model-label",
        help="how the start line names the model (default: the model file; sample() passes "
        "the model's name)",
    )

"""Phase 3, seed and resume: the root seed (given, drawn, or the checkpoint's), the checkpoint a
resumed run continues from, and the checks that it fits."""

from __future__ import annotations

from mpi_pymc.core.config import RunConfig, UserError
from mpi_pymc.core.errors import AgreedError, agree
from mpi_pymc.driver.job import Job
from mpi_pymc.output.checkpoint import Checkpoint


def settle_seed(job: Job, original: RunConfig) -> Checkpoint | None:
    """The root seed (the checkpoint's on --resume, else given, else drawn on rank 0)."""
    from mpi_pymc.core import seeding

    ckpt = None
    if job.config.resume and job.shard_comm is not None:
        job.config, ckpt = _resolve_shard_resume(job, original)
    elif job.config.resume:
        job.config, ckpt = _resolve_resume(job.config, original, job.comm)
    if ckpt is not None and ckpt.fallback:
        job.say(
            f"note: {ckpt.fallback}: resuming from the previous checkpoint "
            f"(draw {ckpt.draws_done} of every chain)"
        )
    root_seed = job.config.seed
    if root_seed is None:
        root_seed = job.comm.bcast(seeding.fresh_root_seed() if job.rank == 0 else None, root=0)
        job.say(f"root seed {root_seed} (pass --seed {root_seed} to repeat this run)")
    job.config = job.config.replace(seed=root_seed)
    return ckpt


def _resolve_shard_resume(job: Job, original: RunConfig) -> tuple[RunConfig, Checkpoint]:
    """--resume of a run with data shards across ranks: every shard resolves its own checkpoint
    (shard 0 the run's, shard s its folder's), then every rank of the job agrees that they all
    continue from the same draw, since the ranks of a shard group take every step together."""
    found, problem = None, None
    try:
        found = _resolve_resume(job.config, original, job.comm)
    except (AgreedError, UserError) as exc:
        problem = str(exc)
    said = job.world.allgather(
        (job.shard, problem, None if found is None else (found[1].draws_done, found[1].iteration))
    )
    problems = [text for _, text, _ in sorted(said, key=lambda x: x[0]) if text]
    if problems:
        raise AgreedError(problems[0])
    where = sorted({(shard, at) for shard, _, at in said})
    if len({at for _, at in where}) > 1:
        listed = ", ".join(f"shard {s} at draw {d} (warmup {i})" for s, (d, i) in where)
        raise AgreedError(
            f"--resume: the data shards' checkpoints are not at the same point ({listed}); "
            "a failure between their writes can leave them so: start the run again without "
            "--resume"
        )
    assert found is not None  # every shard said no problem, so every shard found its checkpoint
    return found


def _resolve_resume(config: RunConfig, original: RunConfig, comm) -> tuple[RunConfig, Checkpoint]:
    """Read the checkpoint: rank 0 its manifests, every rank the part holding its own chains
    (the latest checkpoint whose parts every rank finds intact, else the previous one); take
    seed and chains from it."""
    from mpi_pymc.core import seeding
    from mpi_pymc.output import checkpoint

    path = checkpoint.checkpoint_path(str(config.out))
    manifests, error = None, None
    if comm.Get_rank() == 0:
        try:
            manifests = checkpoint.candidates(path)
        except UserError as exc:
            error = exc
    agree(comm, error, "reading the checkpoint")
    manifests = comm.bcast(manifests, root=0)
    readable = [(where, meta) for where, meta in manifests if isinstance(meta, dict)]
    problems = [meta for _, meta in manifests if isinstance(meta, str)]
    if not readable:
        raise AgreedError(checkpoint.corrupted(path, problems))
    stored = readable[0][1]
    changes = {}
    if original.seed is None:
        changes["seed"] = int(stored["settings"]["seed"])
    if original.chains is None and original.chains_per_rank is None:
        changes["chains"] = int(stored["chains"])
    config = config.replace(**changes)
    if config.chains != int(stored["chains"]):
        raise AgreedError(
            f"--resume: the checkpoint has {stored['chains']} chains but {config.chains} were "
            "asked for: drop --chains/--chains-per-rank when resuming"
        )
    if config.chains < comm.Get_size():
        raise AgreedError(
            f"--resume: {comm.Get_size()} ranks but only {config.chains} chains: launch fewer ranks"
        )
    mine = seeding.chain_group(int(config.chains), comm.Get_size(), comm.Get_rank())

    def agreed(problem: str | None) -> str | None:
        return next((found for found in comm.allgather(problem) if found is not None), None)

    try:
        return config, checkpoint.first_intact(path, manifests, lambda meta: mine, agreed)
    except UserError as exc:  # every rank reached the same verdicts
        raise AgreedError(str(exc)) from None


def check_resume_matches(ckpt: Checkpoint, fingerprint: str, settings: dict) -> None:
    """A resumed run must have the checkpointed run's model and draw-changing settings."""
    from mpi_pymc.output.checkpoint import settings_differences

    if ckpt.meta["fingerprint"] != fingerprint:
        raise AgreedError(
            "--resume: the model differs from the checkpointed run's (fingerprint "
            f"{ckpt.meta['fingerprint'][:12]} vs {fingerprint[:12]}): resume with "
            "the same model file, data and package versions, or start again with --overwrite"
        )
    differences = settings_differences(ckpt.meta["settings"], settings)
    if differences:
        raise AgreedError(
            "--resume: settings differ from the checkpointed run ("
            + "; ".join(differences)
            + "): repeat the original options"
        )

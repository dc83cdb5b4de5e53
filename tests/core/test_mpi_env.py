"""Open MPI's transports for a job on one machine (mpi_pymc/core/mpi_env.py), decided before MPI
starts from what the launcher put in the environment."""

import sys

from helpers import env as rank_env
from helpers import launch, mpirun_or_skip

from mpi_pymc.core import mpi_env
from mpi_pymc.core.mpi_env import one_host_job, prefer_local_transports, without_own_transports


def test_one_host_is_read_from_the_launchers_variables():
    assert one_host_job({})  # no launcher: a job of one
    assert one_host_job({"OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_LOCAL_SIZE": "4"})
    assert not one_host_job({"OMPI_COMM_WORLD_SIZE": "8", "OMPI_COMM_WORLD_LOCAL_SIZE": "4"})
    assert one_host_job({"SLURM_PROCID": "0", "SLURM_STEP_NUM_NODES": "1"})
    assert not one_host_job({"SLURM_PROCID": "3", "SLURM_STEP_NUM_NODES": "2"})
    assert not one_host_job({"PMI_SIZE": "4"})  # another MPI's launcher: no node count


def test_fabrics_are_skipped_on_one_host_unless_the_user_chose_a_transport():
    environ: dict[str, str] = {}
    assert prefer_local_transports(environ)
    assert environ == {"OMPI_MCA_pml": "ob1", "OMPI_MCA_btl": "^ofi,uct"}
    mine = {"OMPI_MCA_btl": "self,tcp"}
    assert not prefer_local_transports(mine) and mine == {"OMPI_MCA_btl": "self,tcp"}
    spread = {"OMPI_COMM_WORLD_SIZE": "8", "OMPI_COMM_WORLD_LOCAL_SIZE": "4"}
    assert not prefer_local_transports(spread) and "OMPI_MCA_pml" not in spread


def test_jobs_launched_from_here_do_not_inherit_this_process_choice(monkeypatch):
    monkeypatch.setattr(mpi_env, "_SET_HERE", {"OMPI_MCA_pml": "ob1", "OMPI_MCA_btl": "^ofi,uct"})
    env = {"OMPI_MCA_pml": "ob1", "OMPI_MCA_btl": "^ofi,uct", "PATH": "/bin"}
    assert without_own_transports(env) == {"PATH": "/bin"}
    # A value the user set since is theirs and travels.
    assert without_own_transports({"OMPI_MCA_pml": "ucx"}) == {"OMPI_MCA_pml": "ucx"}
    assert "OMPI_MCA_pml" not in mpi_env.local_mpi_env(env)


def test_ranks_of_a_local_mpirun_start_mpi_with_the_local_transports():
    """Real ranks: importing mpi_pymc sets the variables before mpi4py starts MPI, and MPI
    then starts and gathers across both ranks with them."""
    script = (
        "import os, mpi_pymc\n"
        "from mpi4py import MPI\n"
        "mine = os.environ['OMPI_MCA_pml'] + ' ' + os.environ['OMPI_MCA_btl']\n"
        "seen = MPI.COMM_WORLD.gather(mine)\n"
        "if MPI.COMM_WORLD.rank == 0:\n"
        "    print(';'.join(seen))\n"
    )
    environ = rank_env()
    for name in ("OMPI_MCA_pml", "OMPI_MCA_btl"):
        environ.pop(name, None)
    command = [mpirun_or_skip(), "-n", "2", sys.executable, "-c", script]
    done = launch(command, 120, env=environ)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ob1 ^ofi,uct;ob1 ^ofi,uct"

"""The local launcher's environment (mpi_pymc/launch.py): what Open MPI gets on one machine."""

from mpi_pymc.launch import local_mpi_env


def test_one_host_runs_skip_the_network_fabrics_unless_the_caller_chose():
    env = local_mpi_env({})
    assert (env["OMPI_MCA_pml"], env["OMPI_MCA_btl"]) == ("ob1", "^ofi,uct")
    assert env["OMPI_ALLOW_RUN_AS_ROOT"] == "1" and env["PYTHONUNBUFFERED"] == "1"
    # A transport the caller set is theirs: nothing is added beside it.
    mine = local_mpi_env({"OMPI_MCA_btl": "self,tcp"})
    assert mine["OMPI_MCA_btl"] == "self,tcp" and "OMPI_MCA_pml" not in mine
    assert local_mpi_env({"OMPI_MCA_pml": "ucx"})["OMPI_MCA_pml"] == "ucx"
    # Ranks that srun may spread over nodes keep the site's transports.
    spread = local_mpi_env({}, one_host=False)
    assert "OMPI_MCA_pml" not in spread and "OMPI_MCA_btl" not in spread

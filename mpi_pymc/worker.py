"""A rank launched by ``mpi_pymc.sample(..., ranks=N)``: ``python -m mpi_pymc.worker RUN.pkl``.

``RUN.pkl`` (written by :func:`mpi_pymc.api.launch`) holds the settings and the pickled model;
every rank unpickles it and runs the same driver as ``python -m mpi_pymc run``, with the same
exit codes and one-line errors, which the launching process turns back into exceptions.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from mpi4py import MPI

    from mpi_pymc.errors import EXIT_CHECKPOINTED, EXIT_OK, exit_code_of

    args = list(sys.argv[1:] if argv is None else argv)
    comm = MPI.COMM_WORLD.Clone()

    def work() -> int:
        from mpi_pymc.run import run

        config, model = _load(args[0], comm)
        result = run(config, comm, model=model)
        return EXIT_CHECKPOINTED if result.resumable else EXIT_OK

    return exit_code_of(comm, work)


def _load(path: str, comm):
    """The launch file's settings and model, unpickled on every rank (failures agreed)."""
    import pickle

    from mpi_pymc.config import RunConfig, UserError
    from mpi_pymc.errors import agree

    payload, error = None, None
    try:
        with open(path, "rb") as handle:
            payload = pickle.load(handle)
    except Exception as exc:  # unpickling user objects may raise anything
        error = UserError(
            f"cannot unpickle the model on this rank ({type(exc).__name__}: {exc}): every "
            "rank needs the packages and modules the model was built with"
        )
    agree(comm, error, "unpickling the model")
    assert payload is not None
    return RunConfig(**payload["config"]), payload["model"]


if __name__ == "__main__":
    sys.exit(main())

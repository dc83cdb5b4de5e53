"""The registry of samplers, one module each in this package, ``--sampler NAME`` is looked up in.

Each module holds one sampler whole (its kernel, or its adapter to a library's) as a
:class:`~mpi_pymc.sampling.base.SamplerBackend`, the interface
:class:`~mpi_pymc.sampling.chain_group.ChainGroupSampler` drives. A new sampler is a module in
this package and a line in :data:`BACKENDS` (and its name in ``config.SAMPLERS``, which the
tests check agree)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from mpi_pymc.sampling.base import SamplerBackend
from mpi_pymc.sampling.blackjax import BlackjaxNuts
from mpi_pymc.sampling.hmc import AdaptiveHmc
from mpi_pymc.sampling.numpyro import NumpyroNuts
from mpi_pymc.sampling.nuts import Nuts

if TYPE_CHECKING:
    from mpi_pymc.core.config import RunConfig
    from mpi_pymc.model.compile import CompiledModel

BackendFactory = Callable[["CompiledModel", "RunConfig"], SamplerBackend]

# --sampler NAME -> the factory of its backend, called with (compiled model, run config).
BACKENDS: dict[str, BackendFactory] = {
    "nuts": Nuts.from_config,
    "numpyro": NumpyroNuts,
    "blackjax": BlackjaxNuts,
    "hmc": AdaptiveHmc.from_config,
}


def backend_for(name: str) -> BackendFactory:
    """The factory of sampler ``name``'s backend; ``KeyError`` naming the known ones."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise KeyError(f"unknown sampler {name!r}: one of {', '.join(BACKENDS)}") from None

"""Warmup adaptation shared by the NUTS and hmc kernels: dual averaging of the step size and a
Welford estimate of the window variance, each a pure per-chain update over the fields a kernel
state carries (``da_*`` and ``wf_*``), plus Stan's mass-matrix regularisation."""

from __future__ import annotations

import jax.numpy as jnp

# Dual averaging (Hoffman & Gelman 2014, as Stan and numpyro set it).
DA_T0, DA_GAMMA, DA_KAPPA = 10.0, 0.05, 0.75


def start_fields(position, step_size) -> dict:
    """The ``da_*`` and ``wf_*`` fields of a state at the start of warmup."""
    zero = jnp.zeros((), position.dtype)
    return {
        "da_mu": jnp.log(10.0 * step_size),
        "da_hbar": zero,
        "da_log_avg": zero,
        "da_count": zero,
        "wf_count": zero,
        "wf_mean": jnp.zeros_like(position),
        "wf_m2": jnp.zeros_like(position),
    }


def dual_averaging(count, hbar, log_avg, mu, accept_prob, target_accept):
    """One update: returns ``(count, hbar, log_step, log_avg)``, the iterate ``log_step`` to
    use next and the weighted average ``log_avg`` to use after warmup."""
    count = count + 1
    weight = 1.0 / (count + DA_T0)
    hbar = (1.0 - weight) * hbar + weight * (target_accept - accept_prob)
    log_step = mu - jnp.sqrt(count) / DA_GAMMA * hbar
    eta = count ** (-DA_KAPPA)
    return count, hbar, log_step, eta * log_step + (1.0 - eta) * log_avg


def welford(count, mean, m2, x, active):
    """Add ``x`` to the running mean and sum of squares when ``active``."""
    count = count + jnp.where(active, 1.0, 0.0)
    delta = x - mean
    new_mean = jnp.where(active, mean + delta / jnp.maximum(count, 1.0), mean)
    return count, new_mean, jnp.where(active, m2 + delta * (x - new_mean), m2)


def regularised(variance, count):
    """Stan's shrinkage of a window variance towards 1e-3 (weight 5 draws)."""
    return (count / (count + 5.0)) * variance + 1e-3 * (5.0 / (count + 5.0))

"""Warmup adaptation shared by the NUTS and hmc kernels: Stan's warmup windows, dual averaging
of the step size and a Welford estimate of the window variance, each a pure per-chain update
over the fields a kernel state carries (``da_*`` and ``wf_*``), plus Stan's mass-matrix
regularisation."""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

# Dual averaging (Hoffman & Gelman 2014, as Stan and numpyro set it).
DA_T0, DA_GAMMA, DA_KAPPA = 10.0, 0.05, 0.75


class Schedule(NamedTuple):
    slow: np.ndarray  # (tune,) bool: iteration feeds the mass-matrix estimate
    window_end: np.ndarray  # (tune,) bool: a slow window ends here, the mass matrix updates
    final_start: int  # first iteration of the last fast window (trajectory averaging)


def warmup_schedule(tune: int) -> Schedule:
    """Stan's warmup windows for ``tune`` iterations (pure)."""
    slow = np.zeros(tune, bool)
    window_end = np.zeros(tune, bool)
    if tune < 20:
        return Schedule(slow, window_end, 0)
    init_buffer, term_buffer, window = 75, 50, 25
    if tune < init_buffer + term_buffer + window:
        init_buffer, term_buffer = int(0.15 * tune), int(0.1 * tune)
        window = tune - init_buffer - term_buffer
    start, end_slow = init_buffer, tune - term_buffer
    while start < end_slow:
        size = window
        if start + size + 2 * size > end_slow:
            size = end_slow - start  # the last window takes the remainder
        slow[start : start + size] = True
        window_end[start + size - 1] = True
        start += size
        window *= 2
    return Schedule(slow, window_end, end_slow)


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

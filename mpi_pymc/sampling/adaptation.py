"""Warmup adaptation shared by the NUTS and hmc kernels: Stan's warmup windows, dual averaging
of the step size and a Welford estimate of the window variance, each a pure per-chain update of
a part of the kernel's state (:class:`DualAveraging`, :class:`Welford`), plus Stan's
mass-matrix regularisation."""

from __future__ import annotations

from typing import NamedTuple

import jax
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


def buffer_pushes(schedule: Schedule, rows: int) -> np.ndarray:
    """(tune,) bool: the slow-window iterations whose draw enters a ``rows``-row window buffer,
    thinned so the buffer spans its whole window (every ``ceil(window / rows)``-th draw, the
    window's last one included) instead of holding only its last ``rows`` draws."""
    pushes = np.zeros_like(schedule.slow)
    ends = np.flatnonzero(schedule.window_end)
    if rows == 0 or not len(ends):
        return pushes
    starts = np.concatenate([[np.argmax(schedule.slow)], ends[:-1] + 1]).astype(int)
    for start, end in zip(starts, ends, strict=True):
        size = end - start + 1
        stride = -(-size // rows)
        offsets = np.arange(size)
        pushes[start : end + 1] = (size - 1 - offsets) % stride == 0
    return pushes


class DualAveraging(NamedTuple):
    """Dual averaging of the log step size: ``mu`` the value it shrinks towards, ``hbar`` the
    averaged shortfall of acceptance from the target, ``log_avg`` the averaged iterate, ``n``
    the updates so far."""

    mu: jax.Array
    hbar: jax.Array
    log_avg: jax.Array
    n: jax.Array


class Welford(NamedTuple):
    """Running mean and sum of squares of the positions over the current slow window, of ``n``
    draws."""

    n: jax.Array
    mean: jax.Array
    m2: jax.Array


def start(position, step_size) -> tuple[DualAveraging, Welford]:
    """Both adaptations at the start of warmup, from step size ``step_size``."""
    zero = jnp.zeros((), position.dtype)
    return (
        DualAveraging(mu=jnp.log(10.0 * step_size), hbar=zero, log_avg=zero, n=zero),
        Welford(n=zero, mean=jnp.zeros_like(position), m2=jnp.zeros_like(position)),
    )


def dual_averaging(da: DualAveraging, accept_prob, target_accept):
    """One update: returns ``(count, hbar, log_step, log_avg)``, the iterate ``log_step`` to
    use next and the weighted average ``log_avg`` to use after warmup."""
    count = da.n + 1
    weight = 1.0 / (count + DA_T0)
    hbar = (1.0 - weight) * da.hbar + weight * (target_accept - accept_prob)
    log_step = da.mu - jnp.sqrt(count) / DA_GAMMA * hbar
    eta = count ** (-DA_KAPPA)
    return count, hbar, log_step, eta * log_step + (1.0 - eta) * da.log_avg


def welford(window: Welford, x, active) -> Welford:
    """Add ``x`` to the running mean and sum of squares when ``active``."""
    count = window.n + jnp.where(active, 1.0, 0.0)
    delta = x - window.mean
    new_mean = jnp.where(active, window.mean + delta / jnp.maximum(count, 1.0), window.mean)
    m2 = jnp.where(active, window.m2 + delta * (x - new_mean), window.m2)
    return Welford(count, new_mean, m2)


def restarted(window: Welford, restart, dtype) -> Welford:
    """``window``, or an empty one where ``restart`` (a slow window ended)."""
    return Welford(
        n=jnp.where(restart, jnp.zeros((), dtype), window.n).astype(dtype),
        mean=jnp.where(restart, jnp.zeros_like(window.mean), window.mean),
        m2=jnp.where(restart, jnp.zeros_like(window.m2), window.m2),
    )


def regularised(variance, count):
    """Stan's shrinkage of a window variance towards 1e-3 (weight 5 draws)."""
    return (count / (count + 5.0)) * variance + 1e-3 * (5.0 / (count + 5.0))

"""JAX translation of PyTensor's ``Eigvalsh`` where the installed one fails (issue #37).

PyTensor translates ``eigvalsh(a, b)`` only for ``b = None``: the generalized form raises
NotImplementedError (at translation on pytensor 3, when traced on pytensor 2); pytensor 2's
translation of the plain form takes two arguments where its node has one, and pytensor 3's
reads both triangles of ``a`` where its C backend (SciPy) reads one. ``pm.CAR``'s
log-density calls ``eigvalsh(DWD, eye)``, so a CAR model did not run.

The generalized symmetric problem ``a v = w b v`` with ``b`` symmetric positive definite has the
eigenvalues of ``c = l^-1 a l^-T``, ``b = l l^T`` (Cholesky): a triangular solve each side and a
symmetric eigvalsh, each differentiable in JAX. As SciPy (PyTensor's C backend) does, each matrix
is read from its lower (``lower=False``: upper) triangle only, so the gradient lands on that
triangle as PyTensor's ``EigvalshGrad`` puts it. A ``b`` that is not positive definite gives NaN
(SciPy raises LinAlgError).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _symmetric_from_triangle(m, lower: bool):
    """The symmetric matrix that has ``m``'s lower (upper) triangle."""
    if lower:
        return jnp.tril(m) + jnp.swapaxes(jnp.tril(m, -1), -1, -2)
    return jnp.triu(m) + jnp.swapaxes(jnp.triu(m, 1), -1, -2)


def eigvalsh(a, b=None, lower: bool = True):
    """Ascending eigenvalues of ``a v = w b v`` (``b=None``: ``a v = w v``), as
    ``scipy.linalg.eigvalsh(a, b, lower=lower)``."""
    a = _symmetric_from_triangle(jnp.asarray(a), lower)
    if b is None:
        return jnp.linalg.eigvalsh(a)
    b = _symmetric_from_triangle(jnp.asarray(b), lower)
    chol = jnp.linalg.cholesky(b)
    half = jax.scipy.linalg.solve_triangular(chol, a, lower=True)  # l^-1 a
    c = jax.scipy.linalg.solve_triangular(chol, jnp.swapaxes(half, -1, -2), lower=True)
    # c is symmetric up to rounding; eigvalsh would average it anyway, say so here.
    return jnp.linalg.eigvalsh(0.5 * (c + jnp.swapaxes(c, -1, -2)))


_ours_for: dict[int, bool] = {}  # input count -> whether our translation serves that form
_theirs = None  # PyTensor's translation of Eigvalsh, kept for the forms it gets right


def _form_fails(translate, nin: int) -> bool:
    """Whether PyTensor's translation of ``Eigvalsh`` fails, or disagrees with SciPy (its C
    backend), on a node with ``nin`` inputs. The probe's matrices have different triangles:
    pytensor 3 translates the plain form as ``jnp.linalg.eigvalsh``, which averages the two
    triangles where SciPy reads one."""
    import numpy as np
    import pytensor.tensor as pt
    import scipy.linalg
    from pytensor.tensor.slinalg import Eigvalsh
    from pytensor.tensor.type_other import NoneConst

    op = Eigvalsh(lower=True)
    a, b = pt.dmatrix("a"), pt.dmatrix("b")
    node = op.make_node(a, b) if nin == 2 else op.make_node(a, NoneConst)
    values = [np.array([[2.0, 0.9], [0.1, 1.0]]), np.array([[2.0, -0.7], [0.5, 1.0]])][:nin]
    try:
        got = np.asarray(jax.jit(translate(op, node=node))(*values))
    except Exception:  # noqa: BLE001  (NotImplementedError, or a signature that does not fit)
        return True
    return not np.allclose(got, scipy.linalg.eigvalsh(*values, lower=True), rtol=1e-12)


def register() -> list[str]:
    """Register our ``Eigvalsh`` translation if PyTensor's fails for either form; it hands the
    forms PyTensor gets right back to PyTensor's. Idempotent; returns ``["Eigvalsh"]`` when
    ours serves some form, else ``[]``."""
    global _theirs
    from pytensor.link.jax.dispatch import jax_funcify
    from pytensor.tensor.slinalg import Eigvalsh

    if not _ours_for:
        _theirs = jax_funcify.dispatch(Eigvalsh)
        for nin in (1, 2):
            _ours_for[nin] = _form_fails(_theirs, nin)
        if any(_ours_for.values()):

            def translate(op, node=None, **kwargs):
                nin = len(node.inputs) if node is not None else 2
                if not _ours_for[nin]:
                    return _theirs(op, node=node, **kwargs)
                lower = op.lower
                dtype = node.outputs[0].type.dtype if node is not None else None

                def eigvalsh_translated(a, b=None):
                    w = eigvalsh(a, b, lower=lower)
                    return w.astype(dtype) if dtype else w

                return eigvalsh_translated

            jax_funcify.register(Eigvalsh)(translate)
    return ["Eigvalsh"] if any(_ours_for.values()) else []

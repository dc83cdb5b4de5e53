"""Eight schools, non-centred (Rubin 1981; the posteriordb ``eight_schools_noncentered``).

Run: ``mpirun -n 2 python -m mpi_pymc run examples/eight_schools.py``
"""

import numpy as np
import pymc as pm

y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
sigma = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
schools = [
    "Choate",
    "Deerfield",
    "Phillips Andover",
    "Phillips Exeter",
    "Hotchkiss",
    "Lawrenceville",
    "St. Paul's",
    "Mt. Hermon",
]

with pm.Model(coords={"school": schools}) as model:
    mu = pm.Normal("mu", mu=0.0, sigma=5.0)
    tau = pm.HalfCauchy("tau", beta=5.0)
    theta_trans = pm.Normal("theta_trans", mu=0.0, sigma=1.0, dims="school")
    theta = pm.Deterministic("theta", mu + tau * theta_trans, dims="school")
    pm.Normal("y", mu=theta, sigma=sigma, observed=y, dims="school")

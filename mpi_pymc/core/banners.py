"""Third-party notices that say nothing about the user's run, silenced before this package loads
their libraries (PyMC, ArviZ). Each filter matches one notice's exact opening words, so warnings
about the user's model or data still reach them."""

from __future__ import annotations

import warnings

# ArviZ 0.2x (imported by PyMC 5) announces its 1.0 refactor on import, once a day per user:
# four lines on every fresh machine and in every CI job, before the run's first line.
_ARVIZ_REFACTOR = r"\s*ArviZ is undergoing a major refactor"


def silence_banners() -> None:
    """Install the filters (idempotent: ``filterwarnings`` drops a duplicate)."""
    warnings.filterwarnings("ignore", message=_ARVIZ_REFACTOR, category=FutureWarning)

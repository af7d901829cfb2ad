"""What every stage stands on: DuckDB connections and SQL files (duck), faults and interrupts
(faults), and a run's scope, the one definition of what the model rebuilds, the checks look at
and the load merges (scope).

Imports tasks.settings only.
"""

from tasks.core import duck, faults
from tasks.core.faults import crash_point, interruption_of, reraise_as_interrupt
from tasks.core.lazy import lazy_names
from tasks.core.scope import RunScope

__all__ = [
    "RunScope",
    "crash_point",
    "duck",
    "faults",
    "interruption_of",
    "lazy_names",
    "reraise_as_interrupt",
]

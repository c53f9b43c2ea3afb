"""Match-day traffic simulation and its ground truth (pure: no Kafka, no wall clock).

``MatchDaySimulator(SimConfig(...))`` yields envelope dicts; ``TruthBuilder`` records what a correct
pipeline must end up with; ``load_truth`` reads it back for ``highway verify``.
"""

from core.sim.names import catalogue, property_specs
from core.sim.simulator import MatchDaySimulator, SimConfig
from core.sim.truth import Truth, TruthBuilder, load_truth

__all__ = [
    "MatchDaySimulator",
    "SimConfig",
    "Truth",
    "TruthBuilder",
    "catalogue",
    "load_truth",
    "property_specs",
]

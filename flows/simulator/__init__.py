"""A simulated Azure estate served over HTTPS in Azure's own wire format.

`simulated_azure(...)` generates a deterministic estate from a seed and serves it on loopback so
the real Azure SDK clients work against it unchanged; `Estate` holds the ground truth tests
compare the pipeline with. Requests need the bearer token `MDECOST_STATIC_TOKEN` when it is
set, else the development token `mdecost-simulator-development-token` (loopback only).
"""

from flows.simulator.estate import Estate, EstateBuilder
from flows.simulator.server import (
    DEVELOPMENT_TOKEN,
    Faults,
    InjectedFault,
    PageSizes,
    SimulatedAzure,
    simulated_azure,
)

__all__ = [
    "DEVELOPMENT_TOKEN",
    "Estate",
    "EstateBuilder",
    "Faults",
    "InjectedFault",
    "PageSizes",
    "SimulatedAzure",
    "simulated_azure",
]

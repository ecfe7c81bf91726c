"""A simulated Azure estate served over HTTPS in Azure's own wire format.

`simulated_azure(...)` generates a deterministic estate from a seed and serves it on loopback so
the real Azure SDK clients work against it unchanged; `Estate` holds the ground truth tests
compare the pipeline with. Requests need the bearer token `MDECOST_STATIC_TOKEN` when it is
set, else the development token `mdecost-simulator-development-token` (loopback only).

The package imports nothing itself (`flows.simulator.server`, `flows.simulator.estate`): every
`mdecost` command loads it for its `simulator` sub-command, and the server's modules (the
Storage SDK among them) took ~0.3 s of each command's start.
"""

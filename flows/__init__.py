"""Prefect flows, the Azure collectors and the `mdecost` command line: everything that does I/O."""

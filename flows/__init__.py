"""Prefect flows, the Azure collectors and the `mdecost` command line: everything that does I/O.

Importing the package sets polars' allocator options before anything here imports polars
(`runtime.allocator_keeps_freed_memory`): polars reads them once, when it is first imported.
"""

from flows.runtime import allocator_keeps_freed_memory

allocator_keeps_freed_memory()

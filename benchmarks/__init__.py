"""Performance benchmarks of mdecost: `python -m benchmarks` (`make bench`)."""

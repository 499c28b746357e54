"""The pure core: no I/O, no clocks; every function here is unit-tested without Docker."""

"""The built-in strategies, one module each. They register through the entry-point group
``gvp_bench.strategies`` declared in pyproject.toml, the same way third-party strategies do."""

"""The benchmark engine: workloads and suites (workloads.py), measurement of time and peak memory
(measure.py), the machine fingerprint (machine.py), the measuring loop with its statuses
(runner.py), and the ``gvp-bench run`` command (command.py, summary.py). Results go through
:mod:`gvp_bench.results`."""

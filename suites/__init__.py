"""Benchmarks over gvp-bench's workloads (gvp_bench.bench.workloads), for asv (bench_products.py)
and for pytest-benchmark (test_bench_pytest.py)."""

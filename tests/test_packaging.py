"""What `pip install` puts in site-packages: gvp_bench and nothing else at the top level."""

import pathlib
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_every_subpackage_of_gvp_bench_is_installed():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "gvp_bench").rglob("__init__.py")}
    mapped = {package for package, folder in setuptools["package-dir"].items() if (ROOT / folder / "__init__.py").exists()}
    assert set(setuptools["packages"]) == on_disk | mapped, "list the new subpackage in pyproject.toml's packages"
    assert all(package.split(".")[0] == "gvp_bench" for package in setuptools["packages"])


def test_the_strategies_install_under_the_gvp_bench_namespace():
    from importlib.metadata import distribution

    entry_points = [ep for ep in distribution("gvp-bench").entry_points if ep.group == "gvp_bench.strategies"]
    assert entry_points and all(ep.value.startswith("gvp_bench.implementations.") for ep in entry_points)
    import gvp_bench.implementations.auto  # noqa: F401 - importable under its installed name

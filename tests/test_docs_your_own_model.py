"""docs/your-own-model.md: the my_model.py it shows is a workload the commands load, and the tests it shows
for a user's own suite pass (tests/test_readme.py runs every block; this also calls the test functions)."""

import pathlib
import re

from gvp_bench import workload_specs

PAGE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "your-own-model.md"


def _blocks():
    return re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)


def test_the_pages_my_model_py_is_a_workload(tmp_path):
    model_file = _blocks()[0]
    assert model_file.startswith("# my_model.py")
    (tmp_path / "my_model.py").write_text(model_file)
    workload = workload_specs.load(f"{tmp_path / 'my_model.py'}:conv_model")
    assert workload.name == "conv_model" and workload.model is not None and not workload.model.training


def test_the_tests_the_page_shows_pass():
    ran = 0
    for block in _blocks():
        if block.startswith("# test_my_model.py"):
            namespace = {}
            exec(compile(block, str(PAGE), "exec"), namespace)
            for name, test in namespace.items():
                if name.startswith("test_") and callable(test):
                    test()
                    ran += 1
    assert ran == 2

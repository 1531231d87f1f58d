"""docs/your-own-model.md runs as written: its first Python block is the user's my_model.py, in a folder of
their own; the others import it from there, and the tests it shows pass."""

import pathlib
import re

PAGE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "your-own-model.md"


def test_the_pages_python_blocks_run_in_a_users_folder(tmp_path, monkeypatch):
    model_file, *blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)
    assert model_file.startswith("# my_model.py") and blocks
    (tmp_path / "my_model.py").write_text(model_file)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    ran_tests = 0
    for block in blocks:
        namespace = {}
        exec(compile(block, str(PAGE), "exec"), namespace)
        for name, test in namespace.items():
            if name.startswith("test_") and callable(test):
                test()
                ran_tests += 1
    assert ran_tests == 2

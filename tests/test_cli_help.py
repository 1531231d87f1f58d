"""The command line answers --help and --version without importing torch, and every command has a description."""

import subprocess
import sys

import pytest

from gvp_bench import cli

WITHOUT_TORCH = """
import sys
from gvp_bench import cli
try:
    cli.main(sys.argv[1:])
except SystemExit:
    pass
assert "torch" not in sys.modules, "torch was imported"
"""


@pytest.mark.parametrize("arguments", [["--help"], ["--version"], ["zoo", "--help"], ["recommend", "--help"]])
def test_help_and_version_do_not_import_torch(arguments):
    finished = subprocess.run([sys.executable, "-c", WITHOUT_TORCH, *arguments], capture_output=True, text=True,
                              timeout=60)
    assert finished.returncode == 0, finished.stderr
    assert "usage: gvp-bench" in finished.stdout or finished.stdout.startswith("gvp-bench ")


def test_version(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert capsys.readouterr().out.startswith("gvp-bench ")


def test_every_command_has_a_description_in_plain_text():
    parser = cli.build_parser()
    commands = next(action for action in parser._actions if action.dest == "command")
    assert set(commands.choices) >= {"conformance", "report", "recommend", "compare", "targets", "zoo", "run"}
    for name, command in commands.choices.items():
        assert command.description, f"{name} has no description"
    for text in [parser.format_help()] + [command.format_help() for command in commands.choices.values()]:
        assert "``" not in text and ":class:" not in text and ":func:" not in text


def test_the_zoo_says_nothing_internal(capsys):
    assert cli.main(["zoo", "--models", "scalar5,elementwise", "--sizes", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "seed" not in out and "2-core" not in out

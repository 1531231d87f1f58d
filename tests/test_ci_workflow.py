"""The CI workflow .github/workflows/benchmarks.yml parses, and every gvp-bench command it runs exists
with those options (parsed by the CLI's own argparse parser)."""

import pathlib
import re
import shlex

import pytest
import yaml

from gvp_bench import cli
from gvp_bench.registry import strategies

WORKFLOW = pathlib.Path(__file__).resolve().parent.parent / ".github" / "workflows" / "benchmarks.yml"
EXPRESSION = re.compile(r"\$\{\{[^}]*\}\}")  # ${{ matrix.shard }} and the like: GitHub fills them in


def _workflow():
    return yaml.safe_load(WORKFLOW.read_text())


def _gvp_bench_commands():
    """Each gvp-bench command of a ``run:`` step, as its argument list, the workflow's env variables filled in."""
    workflow = _workflow()
    commands = []
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            for line in step.get("run", "").splitlines():
                line = EXPRESSION.sub("1", line).split("|")[0].strip()
                for name, value in workflow.get("env", {}).items():
                    line = line.replace(f"${name}", value)
                if line.startswith("gvp-bench "):
                    commands.append(shlex.split(line)[1:])
    return commands


def test_the_workflow_has_sharded_measure_jobs_then_a_compare_job():
    workflow = _workflow()
    jobs = workflow["jobs"]
    assert jobs["measure"]["strategy"]["matrix"]["shard"] == [1, 2, 3, 4]
    assert jobs["compare"]["needs"] == "measure"
    uploads = [step for step in jobs["compare"]["steps"] if step.get("uses", "").startswith("actions/upload-artifact")]
    assert uploads and "report/" in uploads[0]["with"]["path"].split()


def test_the_shards_of_the_workflow_cover_its_matrix():
    shards = [command[command.index("--shard") + 1] for command in _gvp_bench_commands() if "--shard" in command]
    assert shards and all(shard == f"1/{len(_workflow()['jobs']['measure']['strategy']['matrix']['shard'])}"
                          for shard in shards)


@pytest.mark.parametrize("command", _gvp_bench_commands(), ids=lambda command: " ".join(command[:2]))
def test_each_gvp_bench_command_of_the_workflow_parses(command):
    args = cli.build_parser().parse_args(command)  # an unknown command or option exits here
    assert callable(args.run)


def test_the_workflow_runs_run_and_compare_on_registered_strategies():
    assert {command[0] for command in _gvp_bench_commands()} == {"run", "compare"}
    for command in _gvp_bench_commands():
        if command[0] == "run":
            chosen = cli.build_parser().parse_args(command).strategies
            assert chosen and set(chosen) <= set(strategies())

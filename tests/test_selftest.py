"""``gvp-bench selftest`` on the CPU: the command itself runs every check, and a failing check fails it."""

from gvp_bench import cli, selftest


def test_selftest_quick_passes_on_the_cpu_with_only_the_cuda_checks_skipped(capsys):
    assert cli.main(["selftest", "--device", "cpu", "--quick"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("gvp-bench selftest on the CPU")
    checks = lines[1:]
    assert len(checks) == len(selftest.CHECKS)
    skipped = [line for line in checks if line.startswith("skip ")]
    assert [line.split(" (")[0] for line in skipped] == ["skip conformance: cuda_graphs", "skip cuda_graphs replays"]
    assert all(line.startswith("ok ") for line in checks if line not in skipped)
    assert any("recorded as oom" in line for line in checks)


def test_a_failing_check_prints_fail_and_the_command_exits_1(capsys, monkeypatch):
    def fails(device, quick):
        raise AssertionError("what differed")

    def needs_cuda(device, quick):
        raise selftest.Skip("needs CUDA")

    monkeypatch.setattr(selftest, "CHECKS", [("fails", fails), ("skips", needs_cuda), ("passes", lambda d, q: "fine")])
    assert cli.main(["selftest", "--device", "cpu"]) == 1
    lines = capsys.readouterr().out.strip().splitlines()[1:]
    assert [line.split(" (")[0] for line in lines] == ["FAIL fails", "skip skips", "ok   passes"]
    assert lines[0].endswith("AssertionError: what differed")

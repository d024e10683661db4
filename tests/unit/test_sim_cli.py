"""The `nodemesh sim` command line where it needs no kernel: arguments and errors."""

import subprocess
import sys

from click.testing import CliRunner

from nodemesh.tools.cli import main


def _run(*args: str):
    return CliRunner().invoke(main, ["sim", *args])


def test_a_bad_sim_name_is_a_usage_error():
    result = _run("status", "--name", "Bad-Name")
    assert result.exit_code == 2 and "invalid sim name 'Bad-Name'" in result.output


def test_commands_on_a_sim_that_is_not_up_say_how_to_start_it():
    for args in (["status"], ["exec", "shop/client", "--", "true"], ["logs", "controller"],
                 ["stop", "controller"], ["start", "agent/node-a"]):
        result = _run(args[0], "--name", "notup", *args[1:])
        assert result.exit_code == 1, args
        assert "sim 'notup' is not up" in result.output and "nodemesh sim up -f FILE" in result.output


def test_the_sim_name_comes_from_the_environment_too():
    result = CliRunner(env={"NODEMESH_SIM": "fromenv"}).invoke(main, ["sim", "status"])
    assert "sim 'fromenv' is not up" in result.output


def test_exec_needs_a_command():
    result = _run("exec", "shop/client")
    assert result.exit_code == 2 and "Missing argument 'COMMAND...'" in result.output


def test_acting_on_a_sim_without_root_says_so():
    script = ("import os; os.geteuid() == 0 and os.setuid(65534); from click.testing import CliRunner; "
              "from nodemesh.tools.cli import main; "
              "r = CliRunner().invoke(main, ['sim', 'down', '--name', 'notup']); "
              "print(r.exit_code, r.output)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert out.stdout.startswith("1 Error: the simulated cluster needs root"), out.stdout + out.stderr

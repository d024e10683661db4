"""The `nodemesh sim` command line where it needs no kernel: arguments and errors."""

from click.testing import CliRunner
from privileges import without_root

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


def _down_notup() -> tuple[int, str]:
    result = _run("down", "--name", "notup")
    return result.exit_code, result.output


def test_acting_on_a_sim_without_root_says_so():
    result = without_root(_down_notup)
    assert not isinstance(result, Exception), result
    code, output = result
    assert code == 1 and output.startswith("Error: the simulated cluster needs root"), output

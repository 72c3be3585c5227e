"""What every entry point shares: its arguments, and failures as one line and an exit code."""

import importlib
import os
import signal
import subprocess
import sys
from importlib.metadata import entry_points

import pytest

from pipeline.cli import INTERRUPTED, USAGE_ERROR, Command, parse_args, reported_errors
from pipeline.errors import PipelineError


def test_arguments_are_overrides_and_cfg_job():
    assert parse_args(["a=1", "--cfg", "job", "b=2"], "usage") == Command(["a=1", "b=2"], show_config=True)
    assert parse_args(["-c"], "usage") == Command([], show_config=True)
    assert parse_args(["a=1"], "usage") == Command(["a=1"], show_config=False)


def test_help_prints_the_usage_and_exits_0(capsys):
    with pytest.raises(SystemExit) as exited:
        parse_args(["a=1", "--help"], "usage: try it")
    assert exited.value.code == 0 and capsys.readouterr().out == "usage: try it\n"


@pytest.mark.parametrize(("argv", "message"), [
    (["--cfg", "hydra"], "--cfg hydra: only `--cfg job` is supported"),
    (["--fast"], "--fast: unknown option; pass key=value overrides, --cfg job, or --help"),
])
def test_unknown_options_are_refused(argv, message):
    with pytest.raises(PipelineError, match=f"^{message}$"):
        parse_args(argv, "usage")


def exit_of(error: BaseException, capsys) -> tuple[object, str]:
    with pytest.raises(SystemExit) as exited:
        with reported_errors():
            raise error
    return exited.value.code, capsys.readouterr().err


def test_bad_input_is_one_line_and_exit_code_2(capsys, monkeypatch):
    monkeypatch.delenv("PIPELINE_DEBUG", raising=False)
    assert exit_of(PipelineError("trainer.epochs=0: must be >= 1"), capsys) == (
        USAGE_ERROR, "error: trainer.epochs=0: must be >= 1\n")


def test_an_unexpected_error_is_one_line_and_exit_code_1(capsys, monkeypatch):
    monkeypatch.delenv("PIPELINE_DEBUG", raising=False)
    code, err = exit_of(RuntimeError("disk full"), capsys)
    assert code == 1 and err == "error: RuntimeError: disk full (PIPELINE_DEBUG=1 shows the traceback)\n"


def test_pipeline_debug_shows_the_error_itself(monkeypatch):
    monkeypatch.setenv("PIPELINE_DEBUG", "1")
    with pytest.raises(PipelineError, match="bad"):
        with reported_errors():
            raise PipelineError("bad")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_and_sigterm_exit_130(capsys, signum):
    assert exit_of(KeyboardInterrupt(), capsys) == (
        INTERRUPTED, "interrupted: stopped cleanly (the run is marked KILLED)\n")
    before = signal.getsignal(signum)
    with pytest.raises(SystemExit) as exited:
        with reported_errors():
            os.kill(os.getpid(), signum)
    assert exited.value.code == INTERRUPTED
    assert signal.getsignal(signum) is before  # the handler is put back


# Each entry module, with arguments that end it at once (its usage, or a refused worker spec).
ENTRY_MODULES = [("pipeline.run", "--help"), ("pipeline.evaluate", "--help"), ("pipeline.ui", "--help"),
                 ("sweeps.run", "--help"), ("sweeps.workers", "not-a-spec")]


@pytest.mark.parametrize(("module", "argument"), ENTRY_MODULES)
def test_an_entry_module_exits_without_the_final_garbage_collections(module, argument):
    # The exit handler registered first runs last: it sees what the entry point left for the interpreter's exit.
    probe = ("import atexit, gc, runpy, sys\n"
             "atexit.register(lambda: print('frozen at exit:', gc.get_freeze_count() > 0))\n"
             f"sys.argv = [{module!r}, {argument!r}]\n"
             f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n")
    exited = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert exited.stdout.splitlines()[-1] == "frozen at exit: True", exited.stdout + exited.stderr


@pytest.mark.parametrize("command", ["kerastrack-run", "kerastrack-sweep"])
def test_the_installed_commands_run_as_process_entries(command):
    (script,) = entry_points(group="console_scripts", name=command)
    module = importlib.import_module(script.module)
    assert script.load().__wrapped__ is module.main

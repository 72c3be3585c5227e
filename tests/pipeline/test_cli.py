"""What every entry point shares: its arguments, and failures as one line and an exit code."""

import os
import signal

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

"""A run's console output teed into its log file; a stream kept after the run still writes to the console."""

import sys

from pipeline.run_log import teed_to


def test_output_goes_to_the_console_and_the_log(tmp_path, capsys):
    log = tmp_path / "run" / "run.log"
    with teed_to(log):
        print("training")
        print("a warning", file=sys.stderr)
        kept = sys.stderr  # as a logging handler created during the run keeps it
    kept.write("after the run\n")
    assert log.read_text() == "training\na warning\n"
    captured = capsys.readouterr()
    assert captured.out == "training\n" and captured.err == "a warning\nafter the run\n"

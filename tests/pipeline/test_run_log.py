"""A run's console output teed into its log file; a stream kept after the run still writes to the console."""

import sys

from pipeline.run_log import teed_to

# Two updates of one epoch's bar as Keras's progress bar draws them on a terminal, the second one finishing the epoch.
BAR_STEP = "\r\x1b[1m1/7\x1b[0m \x1b[32m━━\x1b[0m\x1b[37m━━━━━━━━━━━━\x1b[0m \x1b[1m3s\x1b[0m 9ms/step - loss: 2.3000"
BAR_END = ("\b" * 60 + "\r\x1b[1m7/7\x1b[0m \x1b[32m━━━━━━━━━━━━━━\x1b[0m\x1b[37m\x1b[0m \x1b[1m0s\x1b[0m 8ms/step"
           " - loss: 1.9000   \n")


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


def test_the_console_gets_the_live_progress_bar_and_the_log_its_last_drawing_as_plain_text(tmp_path, capsys):
    log = tmp_path / "run.log"
    with teed_to(log):
        for text in ("Epoch 1/2\n", BAR_STEP, BAR_END, "Epoch 2/2\n", BAR_STEP, "interrupted"):
            sys.stdout.write(text)
    assert log.read_bytes().decode() == (  # as written: read_text would turn "\r" into "\n"
        "Epoch 1/2\n7/7 ━━━━━━━━━━━━━━ 0s 8ms/step - loss: 1.9000\n"
        "Epoch 2/2\n1/7 ━━━━━━━━━━━━━━ 3s 9ms/step - loss: 2.3000interrupted"
    )
    assert capsys.readouterr().out == f"Epoch 1/2\n{BAR_STEP}{BAR_END}Epoch 2/2\n{BAR_STEP}interrupted"

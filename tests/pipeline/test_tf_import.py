"""TensorFlow's start-up lines and false retracing warnings, in real processes: hidden, unless PIPELINE_DEBUG=1 or
TF_CPP_MIN_LOG_LEVEL=0."""

import os
import re
import subprocess
import sys

import pytest

from pipeline.config import PROJECT_ROOT
from pipeline.tf_import import RETRACING_WARNING

# absl's C++ log lines (I0000 00:00:... file.cc:N] ...), its note about them, TensorFlow's oneDNN notice.
START_UP_NOISE = re.compile(r"^[IWE]\d{4} |absl::InitializeLog|oneDNN custom operations", re.MULTILINE)


def users_environment(**env: str) -> dict[str, str]:
    """This environment as a user's (without the debugging switches the test set-up may set), plus `env`."""
    switches = ("PIPELINE_DEBUG", "TF_CPP_MIN_LOG_LEVEL")
    return {**{name: value for name, value in os.environ.items() if name not in switches}, **env}


def python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_ROOT,
                          env=users_environment(**env), timeout=120)


@pytest.mark.parametrize(("env", "shown"), [
    ({}, False), ({"PIPELINE_DEBUG": "1"}, True), ({"TF_CPP_MIN_LOG_LEVEL": "0"}, True),
], ids=["default", "pipeline-debug", "tf-cpp-min-log-level-0"])
def test_tensorflows_start_up_lines_and_retracing_warnings_show_only_when_asked_for(env, shown):
    result = python("import pipeline, sys, tensorflow as tf\n"
                    "print('after the import', file=sys.stderr)\n"
                    "for model in range(8):  # as a sweep's trials build new models\n"
                    "    tf.function(lambda x: x + 1)(tf.constant(model))", **env)
    assert result.returncode == 0, result.stderr
    assert bool(START_UP_NOISE.search(result.stderr)) == shown, result.stderr
    assert ("after the import\n" in result.stderr) and (RETRACING_WARNING in result.stderr) == shown, result.stderr


def test_what_a_failed_import_wrote_is_shown_after_all():
    result = python("import os\nfrom pipeline.tf_import import _stderr_held_back\n"
                    "with _stderr_held_back():\n    os.write(2, b'why it failed\\n')\n    raise SystemExit(3)")
    assert result.returncode == 3 and result.stderr == "why it failed\n"


@pytest.mark.parametrize(("first", "env"), [
    ("keras", {}), ("tensorflow", {}), ("keras", {"PIPELINE_DEBUG": "1"}),
], ids=["keras-first", "tensorflow-first", "pipeline-debug"])
def test_keras_and_tensorflow_load_without_full_collections_and_what_they_made_is_frozen(first, env):
    result = python("import gc, pipeline\n"
                    "full = []\n"
                    "gc.callbacks.append(lambda phase, info: phase == 'stop' and full.append(info['generation']))\n"
                    f"import {first}\n"
                    "import keras, tensorflow\n"
                    "print(full.count(2), gc.get_freeze_count() > 100_000, gc.isenabled())", **env)
    assert result.stdout.split() == ["0", "True", "True"], result.stdout + result.stderr

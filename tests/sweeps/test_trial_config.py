import shlex

from pipeline.compose import compose_config
from sweeps.trial_config import as_overrides, format_value, group_options, reproduce_command


def test_formatted_values_read_back_as_the_same_values():
    values = {"optimizer.learning_rate": 1.2345e-05, "model.dropout": 0.0, "trainer.epochs": 3,
              "trainer.early_stopping.enabled": True, "tracking.run_name": "a b", "data.max_train_samples": None}
    cfg = compose_config(as_overrides(values))
    for key, value in values.items():
        node = cfg
        for part in key.split("."):
            node = node[part]
        assert node == value, key
    assert format_value(False) == "false"


def test_reproduce_command_is_a_shell_line_of_pipeline_run():
    command = reproduce_command(["trainer.epochs=3"], {"optimizer": "sgd", "optimizer.learning_rate": 0.01})
    assert shlex.split(command) == ["python", "-m", "pipeline.run", "trainer.epochs=3", "optimizer=sgd",
                                    "optimizer.learning_rate=0.01"]


def test_group_options_are_the_yaml_files():
    assert group_options("optimizer") == ["adam", "adamw", "rmsprop", "sgd"]

import optuna
import pytest

from pipeline.compose import compose_config, validate
from pipeline.errors import PipelineError
from sweeps.settings import load
from sweeps.space import baseline_values, check_space, suggest
from sweeps.trial_config import TrialConfigs


def space(*overrides: str):
    return load(list(overrides))[1].params


def test_default_space_passes_its_checks():
    check_space(space(), TrialConfigs([]))


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ([], {"optimizer": "adam", "optimizer.learning_rate": 0.001, "model.dropout": 0.2}),
        (["optimizer=sgd", "optimizer.momentum=0.9", "model.dropout=0.5"],
         {"optimizer": "sgd", "optimizer.learning_rate": 0.01, "model.dropout": 0.5, "optimizer.momentum": 0.9}),
        # outside the searched range: the sampler chooses that one
        (["optimizer=sgd", "optimizer.learning_rate=0.5"],
         {"optimizer": "sgd", "model.dropout": 0.2, "optimizer.momentum": 0.0}),
    ],
)
def test_the_baseline_is_the_commands_own_values_of_the_searched_keys(overrides, expected):
    assert baseline_values(space(), TrialConfigs(overrides).build({})) == expected


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("sweep.params.dropout.key=model.dropuot", "sweep.params.dropout.key=model.dropuot: unknown config key"),
        ("sweep.params.dropout.low=0.7", "sweep.params.dropout: empty range low=0.7 >= high=0.6"),
        ("sweep.params.learning_rate.low=0", "sweep.params.learning_rate: log scale needs low > 0, got low=0"),
        ("sweep.params.optimizer.choices=[sgd,adamm]",
         "unknown optimizer 'adamm'; choose from adam, adamw, rmsprop, sgd"),
        ("sweep.params.dropout.high=1.0", "sweep.params.dropout: model.dropout=1.0: input should be less than 1"),
        ("sweep.params.momentum.when={optimizer: nadam}", "when: optimizer='nadam' is not one of its choices"),
    ],
)
def test_bad_space_fails_in_one_line_before_any_trial(override: str, message: str):
    with pytest.raises(PipelineError, match="^.*$") as raised:
        check_space(space(override), TrialConfigs([]))
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_key_of_only_some_group_choices_must_be_conditional():
    with pytest.raises(PipelineError) as raised:
        check_space(space("~sweep.params.momentum.when"), TrialConfigs([]))
    assert "optimizer.momentum: unknown config key with optimizer=adam (declare `when:`" in str(raised.value)


def test_conditional_parameter_is_sampled_only_for_its_choice():
    params = space()
    sgd = suggest(optuna.trial.FixedTrial({"optimizer": "sgd", "optimizer.learning_rate": 0.01,
                                           "model.dropout": 0.1, "optimizer.momentum": 0.9}), params)
    adam = suggest(optuna.trial.FixedTrial({"optimizer": "adam", "optimizer.learning_rate": 0.01,
                                            "model.dropout": 0.1}), params)
    assert sgd == {"optimizer": "sgd", "optimizer.learning_rate": 0.01, "model.dropout": 0.1, "optimizer.momentum": 0.9}
    assert "optimizer.momentum" not in adam


def test_sampled_values_stay_in_their_ranges():
    params = space("+sweep.params.epochs={key: trainer.epochs, type: int, low: 1, high: 3}")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        values = suggest(study.ask(), params)
        assert 1e-4 <= values["optimizer.learning_rate"] <= 1e-1
        assert 0 <= values["model.dropout"] <= 0.6
        assert values["trainer.epochs"] in (1, 2, 3)
        assert ("optimizer.momentum" in values) == (values["optimizer"] == "sgd")


def test_trial_config_equals_hydra_composition_of_the_same_overrides():
    values = {"optimizer": "sgd", "optimizer.learning_rate": 0.0123, "optimizer.momentum": 0.5, "model.dropout": 0.25}
    built = TrialConfigs(["trainer.epochs=3"]).build(values)
    composed = compose_config(["trainer.epochs=3", "optimizer=sgd", "optimizer.learning_rate=0.0123",
                               "optimizer.momentum=0.5", "model.dropout=0.25"])
    assert built == composed


def test_a_sweep_can_search_the_precision():
    params = space("+sweep.params.precision={key: device.precision, type: categorical, "
                   "choices: [float32, mixed_bfloat16]}")
    check_space(params, TrialConfigs([]))
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    assert suggest(trial, params)["device.precision"] in ("float32", "mixed_bfloat16")
    with pytest.raises(PipelineError) as raised:
        check_space(space("+sweep.params.precision={key: device.precision, type: categorical, choices: [bf16]}"),
                    TrialConfigs([]))
    assert "sweep.params.precision: device.precision='bf16': allowed: 'auto', 'float32'" in str(raised.value)


FINE_TUNE_SPACE = [
    "~sweep.params.optimizer", "~sweep.params.momentum", "~sweep.params.learning_rate",
    "+sweep.params.backbone={key: model.backbone, type: categorical, choices: [MobileNetV3Small, EfficientNetV2B0]}",
    "+sweep.params.fine_tune_rate={key: trainer.fine_tune.learning_rate, type: float, low: 1e-6, high: 1e-4, "
    "log: true}",
    "+sweep.params.unfreeze={key: trainer.fine_tune.unfreeze, type: categorical, choices: [all, 20, 50]}",
]
PRETRAINED = ["model=pretrained", "trainer.fine_tune.epochs=2"]


def test_a_sweep_can_search_a_backbone_its_dropout_and_the_fine_tuning():
    params = space(*FINE_TUNE_SPACE)
    configs = TrialConfigs(PRETRAINED)
    check_space(params, configs)
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    values = suggest(trial, params)
    assert set(values) == {"model.backbone", "model.dropout", "trainer.fine_tune.learning_rate",
                           "trainer.fine_tune.unfreeze"}
    settings = validate(configs.build(values))
    assert settings.model.backbone == values["model.backbone"]
    assert settings.trainer.fine_tune.unfreeze == values["trainer.fine_tune.unfreeze"]


@pytest.mark.parametrize("override, message", [
    ("+sweep.params.backbone.choices=[MobileNetV3Small, ResNet5]",
     "sweep.params.backbone: model.backbone=ResNet5: not a keras.applications backbone; did you mean ResNet50"),
    ("+sweep.params.unfreeze.choices=[all, 0]", "sweep.params.unfreeze: trainer.fine_tune.unfreeze=0: allowed: all"),
    ("sweep.params.fine_tune_rate.low=0", "sweep.params.fine_tune_rate: log scale needs low > 0"),
])
def test_a_bad_fine_tuning_space_fails_in_one_line(override, message):
    with pytest.raises(PipelineError) as raised:
        check_space(space(*FINE_TUNE_SPACE, override), TrialConfigs(PRETRAINED))
    assert str(raised.value).startswith(message), raised.value

"""The optimizer-schedule plugins: the paper's stages by default, options honoured and checked."""

from __future__ import annotations

import subprocess
import sys

import pluggy
import pytest

from feph_finetune import RunContext, hookspecs
from feph_finetune.config.options import as_option, option_problems
from feph_finetune_plugins import adam, adam_sgd, sam, sam_sgd, schedules

SCHEDULE_PLUGINS = {"adam": adam, "adam_sgd": adam_sgd, "sam": sam, "sam_sgd": sam_sgd}

# (stage name, trainable, epochs, optimizer class, learning rate, SAM rho or None): the paper's text.
PAPER_STAGES = {
    "adam": [("head", "head", 3, "Adam", 1e-3, None), ("adam", "all", 7, "Adam", 1e-3, None)],
    "adam_sgd": [
        ("head", "head", 3, "Adam", 1e-3, None),
        ("adam", "all", 5, "Adam", 1e-3, None),
        ("sgd", "all", 2, "SGD", 1e-4, None),
    ],
    "sam": [("head", "head", 3, "Adam", 1e-3, None), ("sam_adam", "all", 6, "Adam", 1e-4, 0.05)],
    "sam_sgd": [("head", "head", 3, "Adam", 1e-3, None), ("sam_sgd", "all", 6, "SGD", 1e-4, 0.05)],
}


def context(**options) -> RunContext:
    return RunContext(
        run_id="run",
        experiment="exp",
        phase="exploratory",
        fold=None,
        seed=0,
        input_size=32,
        config={},
        options=options,
    )


def learning_rate(optimizer) -> float:
    return float(optimizer.learning_rate.numpy())


def describe(stage) -> tuple:
    """A stage as a comparable tuple; rho is read from the SAM model its wrap builds."""
    rho = None
    if stage.wrap is not None:
        import keras

        inner = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        rho = stage.wrap(inner).rho
    return (
        stage.name,
        stage.trainable,
        stage.epochs,
        type(stage.optimizer).__name__,
        pytest.approx(learning_rate(stage.optimizer)),
        rho if rho is None else pytest.approx(rho),
    )


@pytest.mark.parametrize("plugin", sorted(SCHEDULE_PLUGINS))
def test_default_schedule_is_the_papers(plugin):
    module = SCHEDULE_PLUGINS[plugin]
    defaults = {key: option.default for key, option in module.plugin_options().items()}
    stages = module.optimizer_schedule(context(**defaults))
    assert [describe(stage) for stage in stages] == PAPER_STAGES[plugin]
    # A context without options (a direct call) gets the same defaults.
    assert [describe(stage) for stage in module.optimizer_schedule(context())] == PAPER_STAGES[plugin]


def test_every_stage_gets_its_own_optimizer():
    stages = sam.optimizer_schedule(context())
    assert stages[0].optimizer is not stages[1].optimizer


def test_adam_options_are_honoured():
    stages = adam.optimizer_schedule(context(head_epochs=1, head_lr=0.01, epochs=4, lr=2e-4))
    assert [describe(stage) for stage in stages] == [
        ("head", "head", 1, "Adam", 0.01, None),
        ("adam", "all", 4, "Adam", 2e-4, None),
    ]


def test_adam_sgd_reaches_the_authors_code_values():
    options = {"adam_lr": 1e-4, "sgd_lr": 1e-3, "sgd_epochs": 3, "momentum": 0.9}
    stages = adam_sgd.optimizer_schedule(context(**options))
    assert [describe(stage) for stage in stages] == [
        ("head", "head", 3, "Adam", 1e-3, None),
        ("adam", "all", 5, "Adam", 1e-4, None),
        ("sgd", "all", 3, "SGD", 1e-3, None),
    ]
    assert stages[2].optimizer.momentum == pytest.approx(0.9)


def test_sam_options_are_honoured():
    stages = sam.optimizer_schedule(context(head_epochs=0, epochs=2, lr=3e-3, rho=0.2))
    assert [describe(stage) for stage in stages] == [
        ("head", "head", 0, "Adam", 1e-3, None),
        ("sam_adam", "all", 2, "Adam", 3e-3, 0.2),
    ]


def test_sam_sgd_options_are_honoured():
    stages = sam_sgd.optimizer_schedule(context(head_lr=5e-3, epochs=1, lr=0.01, rho=1, momentum=0.5))
    assert [describe(stage) for stage in stages] == [
        ("head", "head", 3, "Adam", 5e-3, None),
        ("sam_sgd", "all", 1, "SGD", 0.01, 1.0),
    ]
    assert stages[1].optimizer.momentum == pytest.approx(0.5)


BAD_OPTIONS = [
    ("adam", "lr", 0.0),
    ("adam", "head_lr", -1e-3),
    ("adam", "epochs", -1),
    ("adam", "head_epochs", 2.5),
    ("adam_sgd", "sgd_lr", float("nan")),
    ("adam_sgd", "adam_epochs", True),
    ("adam_sgd", "momentum", 1.0),
    ("adam_sgd", "momentum", -0.1),
    ("sam", "rho", 0.0),
    ("sam", "rho", -0.05),
    ("sam", "lr", "1e-4"),
    ("sam_sgd", "rho", float("inf")),
    ("sam_sgd", "epochs", -2),
    ("sam_sgd", "momentum", 2),
]


@pytest.mark.parametrize(("plugin", "key", "value"), BAD_OPTIONS)
def test_bad_option_is_refused_by_its_declaration(plugin, key, value):
    declaration = as_option(SCHEDULE_PLUGINS[plugin].plugin_options()[key])
    assert option_problems(value, declaration)


@pytest.mark.parametrize("plugin", sorted(SCHEDULE_PLUGINS))
def test_defaults_pass_their_declarations(plugin):
    declarations = SCHEDULE_PLUGINS[plugin].plugin_options()
    assert all(option_problems(option.default, option) == [] for option in declarations.values())


def test_options_default_to_a_fresh_dict():
    options = adam.plugin_options()
    options["lr"] = 1.0
    assert adam.plugin_options()["lr"].default == 1e-3


@pytest.mark.parametrize("plugin", sorted(SCHEDULE_PLUGINS))
def test_each_plugin_registers_exactly_its_two_hooks(plugin):
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    module = SCHEDULE_PLUGINS[plugin]
    manager.register(module, name=plugin)
    manager.check_pending()
    hooks = {caller.name for caller in manager.get_hookcallers(module)}
    assert hooks == {"plugin_options", "optimizer_schedule"}
    assert manager.hook.plugin_options() == module.plugin_options()  # Options compare by value


def test_schedules_helper_module_is_not_a_plugin():
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    manager.register(schedules, name="schedules")
    assert not manager.get_hookcallers(schedules)


def test_importing_the_plugins_does_not_import_tensorflow():
    code = (
        "import sys\n"
        "import feph_finetune_plugins.adam, feph_finetune_plugins.adam_sgd\n"
        "import feph_finetune_plugins.sam, feph_finetune_plugins.sam_sgd\n"
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"

"""Plugin ``sam``: the paper's FT + SAM, and the Sharpness-Aware Minimization model for Keras 3.

Phase 1 trains the new head for 3 epochs with Adam at lr 1e-3 (no SAM); phase 2 unfreezes every
layer and trains 6 epochs with SAM (Foret et al. 2020, radius rho 0.05) around Adam at lr 1e-4.

SAM looks for weights whose whole neighbourhood has a low loss. Each training step:

1. computes the gradient g of the loss at the weights w;
2. moves to the worst nearby point w + e, with e = rho * g / ||g|| (global norm over all
   trainable variables);
3. computes the gradient at w + e, moves back to w, and lets the base optimizer apply that
   second gradient to w.

This costs two forward and backward passes per step. The Keras model class is built on first use
(:func:`sharpness_aware_model_class`) so that importing this plugin does not import TensorFlow.
"""

from __future__ import annotations

import functools
from typing import Any

from feph_finetune import TrainingStage
from feph_finetune_plugins.schedules import HEAD_OPTIONS, adam, epochs, learning_rate, rho, schedule_hooks

PLUGIN = "sam"
OPTIONS = {
    **HEAD_OPTIONS,
    "epochs": epochs(6, "epochs of SAM around Adam on all layers"),
    "lr": learning_rate(1e-4, "Adam learning rate inside SAM"),
    "rho": rho(),
}

#: Added to the gradient norm so that a zero gradient gives no perturbation, not a division by zero.
NORM_EPSILON = 1e-12


def later_stages(options: dict) -> list[TrainingStage]:
    """Phase 2, after :func:`~feph_finetune_plugins.schedules.head_stage`."""
    return [
        sam_stage("sam_adam", epochs=int(options["epochs"]), optimizer=adam(float(options["lr"])), rho=float(options["rho"]), label="all layers, SAM around Adam"),
    ]


plugin_options, optimizer_schedule = schedule_hooks(OPTIONS, later_stages)


def sam_stage(name: str, epochs: int, optimizer: Any, rho: float, label: str = "") -> TrainingStage:
    """An all-layers stage that trains with SAM of radius ``rho`` around ``optimizer``."""
    return TrainingStage(name, "all", epochs, optimizer, wrap=functools.partial(sharpness_aware, rho=rho), label=label)


def sharpness_aware(model: Any, rho: float = 0.05) -> Any:
    """Wrap a Keras ``model`` so that ``fit`` trains it with SAM; the wrapper shares its weights."""
    return sharpness_aware_model_class()(model, rho=rho)


@functools.cache
def sharpness_aware_model_class() -> type:
    """The Keras model class behind :func:`sharpness_aware` (TensorFlow backend)."""
    import keras
    import tensorflow as tf

    class SharpnessAwareModel(keras.Model):
        """Trains ``inner`` with SAM around whatever optimizer it is compiled with.

        Compile and fit this wrapper as any model; the weights trained are ``inner``'s own, so
        save ``inner``. ``evaluate`` and ``predict`` behave as ``inner``'s. Loss and metrics
        reported during training are those at the unperturbed weights.
        """

        def __init__(self, inner: Any, rho: float = 0.05, **kwargs: Any):
            kwargs.setdefault("name", f"sam_{inner.name}")
            super().__init__(**kwargs)
            if not rho > 0:
                raise ValueError(f"SharpnessAwareModel: rho must be > 0, not {rho!r}")
            self.inner = inner
            self.rho = float(rho)
            self._gradients_here = None
            self.built = inner.built  # it owns no variables: built when the inner model is

        def compile(self, *args: Any, **kwargs: Any) -> None:
            super().compile(*args, **kwargs)
            self._gradients_here = None  # traced for the old loss, optimizer and trainable set

        def call(self, inputs: Any, training: bool | None = None) -> Any:
            return self.inner(inputs, training=training)

        def train_step(self, data: Any) -> dict[str, Any]:
            x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
            variables = self.trainable_weights
            if self._gradients_here is None:
                # One traced function serves both passes: traced once, not twice (a trace of
                # EfficientNet-B0's forward and backward pass takes seconds on a CPU).
                self._gradients_here = tf.function(self._forward_backward, reduce_retracing=True)

            y_pred, loss, gradients = self._gradients_here(x, y, sample_weight)
            self._track_loss(loss, x)
            # The first pass updated BatchNorm's moving statistics; the second must not.
            statistics = _snapshot(self.non_trainable_weights)
            weights = _snapshot(variables)

            self._ascend(variables, gradients)
            _, _, sharp_gradients = self._gradients_here(x, y, sample_weight)

            _restore(variables, weights)
            _restore(self.non_trainable_weights, statistics)
            self.optimizer.apply(sharp_gradients, variables)
            return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

        def _forward_backward(self, x: Any, y: Any, sample_weight: Any) -> tuple:
            """The prediction, the loss and its gradient at the trainable variables' current values."""
            variables = self.trainable_weights
            with tf.GradientTape() as tape:
                y_pred = self(x, training=True)
                loss = self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
                scaled_loss = self.optimizer.scale_loss(loss)
            return y_pred, loss, tape.gradient(scaled_loss, variables)

        def _ascend(self, variables: list, gradients: list) -> None:
            """w <- w + rho * g / ||g||; variables without a gradient stay where they are."""
            present = [(v, tf.convert_to_tensor(g)) for v, g in zip(variables, gradients) if g is not None]
            norm = tf.linalg.global_norm([g for _, g in present])
            scale = self.rho / (norm + NORM_EPSILON)
            for variable, gradient in present:
                variable.assign_add(gradient * tf.cast(scale, gradient.dtype))

        def _track_loss(self, loss: Any, x: Any) -> None:
            """Feed the loss tracker (the metric named "loss") as Keras' own train_step does."""
            batch_size = tf.shape(tf.nest.flatten(x)[0])[0]
            for metric in self.metrics:
                if metric.name == "loss":
                    metric.update_state(loss, sample_weight=batch_size)
                    return

    def _snapshot(variables: list) -> list:
        # Reads are ordered against the surrounding assignments by tf.function's automatic
        # control dependencies, so these are the values at this point of the step.
        return [tf.identity(variable) for variable in variables]

    def _restore(variables: list, values: list) -> None:
        for variable, value in zip(variables, values):
            variable.assign(value)

    return SharpnessAwareModel

"""What a plugin's hook is given: the core's data, which the core uses after the hook returns,
passed so that no plugin can change it (:func:`protected`, applied where every hook is called:
:meth:`feph_finetune.plugins.Plugins.call`).

An ``evaluate`` plugin that sorted ``y_prob`` in place changed every later plugin's metrics and
``predictions.npz``; a ``weight_classes`` plugin that sorted ``labels`` trained the model on labels
no longer aligned with their images; a tracker that popped a key from ``track_run_end``'s record
changed ``result.json``. Each was silent. Here arrays are given as read-only views (an in-place
write raises ``ValueError`` in the plugin, reported as that plugin's failure), and the plain
containers that hold the core's data (dicts, lists, tuples: a record, logs, settings, options) as
copies, so a plugin may use them as its own scratch without reaching the core.

The plugin's other arguments (a :class:`~feph_finetune.RunContext`, a ``Run``, a callable) are
immutable or the plugin's own to call, and are passed as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def protected_arguments(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of a hook call, each :func:`protected`."""
    return {name: protected(value) for name, value in arguments.items()}


def protected(value: Any) -> Any:
    """``value`` as a plugin may receive it: a numpy array as a read-only view of the same data (no
    copy: a test set's probabilities or a training set's labels can be large), a dict, list or
    tuple as a copy whose items are protected in turn; anything else as it is."""
    if isinstance(value, np.ndarray):
        view = value.view()
        view.flags.writeable = False
        return view
    if type(value) is dict:
        return {key: protected(item) for key, item in value.items()}
    if type(value) in (list, tuple):
        return type(value)(protected(item) for item in value)
    return value

"""feph_finetune: fine-tune facial-expression CNNs on the FePh sign-language dataset.

The public API for plugins is what this module exports; nothing here imports TensorFlow. Every
name is imported on its first use (PEP 562), so that ``import feph_finetune`` costs next to
nothing: ``python -m feph_finetune`` and the ``feph-finetune`` script import this package before
they can install the stop-signal handlers (:mod:`feph_finetune.__main__`), and a SIGTERM during a
quarter-second of imports here would end the process with 143 instead of the promised 130. The
objects for writing an executor (``Executor``, ``ExecutorError``, ``InProcess``, ``RunJob``,
``execute_run``) and for running a matrix from Python (``run_matrix``, ``plan_matrix``,
``Session``, ``MatrixResult``, ``load_results``, ``Results``, ``RunRecord``, and ``RunConfig``, a
run's resolved configuration) are exported the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

from feph_finetune.data import image_headers as _image_headers  # noqa: E402 (no cv2, no TensorFlow: microseconds)

_image_headers.set_default_limit()  # before anything of the package imports cv2, which reads it then (image_headers)

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time :func:`__getattr__` imports each on first use
    from feph_finetune.api import (
        CLASSES,
        Augmentation,
        BuiltModel,
        Dataset,
        DatasetError,
        DroppedEntry,
        FrameResult,
        PluginError,
        Preprocessing,
        RunContext,
        Sample,
        TrackedRun,
        TrainingStage,
    )
    from feph_finetune.config.options import Option
    from feph_finetune.config.resolved import RunConfig
    from feph_finetune.convert import VARIANTS as EFFICIENTNET_VARIANTS
    from feph_finetune.convert import ConversionError, ConvertedModel, efficientnet_b0_classifier, efficientnet_classifier, read_converted
    from feph_finetune.data.class_mapping import class_names_problem
    from feph_finetune.data.images import decodable, read_image
    from feph_finetune.data.keras_files import keras_file_problem
    from feph_finetune.data.user_files import input_file_problem, input_folder_problem
    from feph_finetune.data.labelled_files import files_fingerprint, read_csv_rows, resolve_inside, samples_from_rows, settle_repeats, whole_number
    from feph_finetune.execution.executors import Executor, ExecutorError, InProcess
    from feph_finetune.execution.job import RunJob, execute_run
    from feph_finetune.hookspecs import hookimpl
    from feph_finetune.results.collection import Results, load_results
    from feph_finetune.results.records import RunRecord
    from feph_finetune.session import MatrixResult, Session, plan_matrix, run_matrix


def _exports(module: str, *names: str) -> dict[str, tuple[str, str]]:
    """``{name: (module, name)}`` for names a module defines under the same name."""
    return {name: (module, name) for name in names}


#: Every public name but ``__version__``: ``{public name: (module that defines it, its name there)}``.
_EXPORTS: dict[str, tuple[str, str]] = {
    **_exports(
        "feph_finetune.api",
        "CLASSES",
        "Augmentation",
        "BuiltModel",
        "Dataset",
        "DatasetError",
        "DroppedEntry",
        "FrameResult",
        "PluginError",
        "Preprocessing",
        "RunContext",
        "Sample",
        "TrackedRun",
        "TrainingStage",
    ),
    **_exports("feph_finetune.data.class_mapping", "class_names_problem"),
    **_exports("feph_finetune.data.images", "decodable", "read_image"),
    **_exports("feph_finetune.data.keras_files", "keras_file_problem"),
    **_exports("feph_finetune.data.user_files", "input_file_problem", "input_folder_problem"),
    **_exports(
        "feph_finetune.data.labelled_files",
        "files_fingerprint",
        "read_csv_rows",
        "resolve_inside",
        "samples_from_rows",
        "settle_repeats",
        "whole_number",
    ),
    "EFFICIENTNET_VARIANTS": ("feph_finetune.convert", "VARIANTS"),
    **_exports(
        "feph_finetune.convert",
        "ConversionError",
        "ConvertedModel",
        "efficientnet_b0_classifier",
        "efficientnet_classifier",
        "read_converted",
    ),
    **_exports("feph_finetune.hookspecs", "hookimpl"),
    **_exports("feph_finetune.config.options", "Option"),
    # Writing an executor (these pull in the runner's modules).
    **_exports("feph_finetune.execution.executors", "Executor", "ExecutorError", "InProcess"),
    **_exports("feph_finetune.execution.job", "RunJob", "execute_run"),
    # Running a matrix and reading its results from Python (a notebook, a script).
    **_exports("feph_finetune.session", "run_matrix", "plan_matrix", "Session", "MatrixResult"),
    **_exports("feph_finetune.results.collection", "load_results", "Results"),
    **_exports("feph_finetune.results.records", "RunRecord"),
    **_exports("feph_finetune.config.resolved", "RunConfig"),
}


def __getattr__(name: str):
    """Import a public name on its first use and keep it here, so later uses are plain lookups."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'feph_finetune' has no attribute {name!r}")
    import importlib

    module, attribute = _EXPORTS[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = [*_EXPORTS, "__version__"]

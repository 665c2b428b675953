"""feph_finetune: fine-tune facial-expression CNNs on the FePh sign-language dataset.

The public API for plugins is what this module exports; nothing here imports TensorFlow. The
objects for writing an executor (``Executor``, ``ExecutorError``, ``InProcess``, ``RunJob``, ``execute_run``) and
for running a matrix from Python (``run_matrix``, ``plan_matrix``, ``Session``, ``MatrixResult``,
``load_results``, ``Results``, ``RunRecord``, and ``RunConfig``, a run's resolved configuration)
are imported on first use.
"""

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
from feph_finetune.data.class_mapping import class_names_problem
from feph_finetune.data.images import decodable, read_image
from feph_finetune.data.keras_files import keras_file_problem
from feph_finetune.data.user_files import input_file_problem, input_folder_problem
from feph_finetune.data.labelled_files import files_fingerprint, read_csv_rows, resolve_inside, samples_from_rows, settle_repeats, whole_number
from feph_finetune.convert import VARIANTS as EFFICIENTNET_VARIANTS
from feph_finetune.convert import ConversionError, ConvertedModel, efficientnet_b0_classifier, efficientnet_classifier, read_converted
from feph_finetune.hookspecs import hookimpl
from feph_finetune.config.options import Option

__version__ = "0.1.0"

#: Objects for writing an executor, imported on first use (they pull in the runner's modules).
_EXECUTION_API = {
    "Executor": "feph_finetune.execution.executors",
    "ExecutorError": "feph_finetune.execution.executors",
    "InProcess": "feph_finetune.execution.executors",
    "RunJob": "feph_finetune.execution.job",
    "execute_run": "feph_finetune.execution.job",
}

#: Running a matrix and reading its results from Python (a notebook, a script), on first use.
_LIBRARY_API = {
    "run_matrix": "feph_finetune.session",
    "plan_matrix": "feph_finetune.session",
    "Session": "feph_finetune.session",
    "MatrixResult": "feph_finetune.session",
    "load_results": "feph_finetune.results.collection",
    "Results": "feph_finetune.results.collection",
    "RunRecord": "feph_finetune.results.records",
    "RunConfig": "feph_finetune.config.resolved",
}


def __getattr__(name: str):
    module = _EXECUTION_API.get(name) or _LIBRARY_API.get(name)
    if module is not None:
        import importlib

        return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module 'feph_finetune' has no attribute {name!r}")


__all__ = [
    "CLASSES",
    "EFFICIENTNET_VARIANTS",
    "Augmentation",
    "Executor",
    "ExecutorError",
    "InProcess",
    "MatrixResult",
    "Results",
    "RunConfig",
    "RunJob",
    "RunRecord",
    "Session",
    "execute_run",
    "BuiltModel",
    "Dataset",
    "DatasetError",
    "DroppedEntry",
    "Sample",
    "class_names_problem",
    "decodable",
    "files_fingerprint",
    "input_file_problem",
    "input_folder_problem",
    "keras_file_problem",
    "read_csv_rows",
    "read_image",
    "resolve_inside",
    "samples_from_rows",
    "settle_repeats",
    "whole_number",
    "ConversionError",
    "ConvertedModel",
    "FrameResult",
    "Option",
    "PluginError",
    "Preprocessing",
    "RunContext",
    "TrackedRun",
    "TrainingStage",
    "efficientnet_b0_classifier",
    "efficientnet_classifier",
    "hookimpl",
    "load_results",
    "plan_matrix",
    "read_converted",
    "run_matrix",
    "__version__",
]

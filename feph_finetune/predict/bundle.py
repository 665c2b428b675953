"""Model bundles: a trained model together with everything needed to feed it as in training.

A bundle is a folder (not an archive, so that each part can be inspected and the Keras file loaded
on its own) holding:

- ``model.keras``: the fine-tuned Keras model (float32 B x S x S x 3 in, softmax over the classes
  out), loaded with ``keras.saving.load_model(..., safe_mode=True)``;
- ``state.npz``: the fitted state of the preprocessing steps that learned something from the
  training split (``Preprocessing.state``, e.g. the ``dataset_mean`` of ``normalize``), when any;
- ``bundle.json``: the manifest, written last (a folder without it is not a bundle): the format and
  its version, the input size, the class names in output order, the preprocessing plugins in
  order with their options, the run's id and resolved configuration, and the versions of the
  libraries and plugins that trained it.

A run with ``save_model = true`` makes its run directory a bundle (the three files beside the
run's results, which a bundle's reader ignores); ``python -m feph_finetune export RUN_DIR OUT``
copies the three to a folder of their own. ``predict``
rebuilds each preprocessing step through the plugin's ``preprocess`` hook with the stored options
and restores its fitted state, so new frames go through the same functions
(:func:`feph_finetune.data.frames.apply_steps`, :func:`feph_finetune.training.stages.preprocess_batch`) as the
run's training and test images.

Nothing here imports TensorFlow except :func:`load_model`.
"""

from __future__ import annotations

import io
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

import feph_finetune
from feph_finetune.api import PluginError, Preprocessing, RunContext
from feph_finetune.config.reading import close_match, dotted_key
from feph_finetune.data.user_files import (
    FOLDER, MAX_JSON_BYTES, NO_SUCH_FILE_OR_FOLDER, UnreadableFile, classify_path, lookup_problem, read_json_file, read_user_file, regular_file_problem,
)
from feph_finetune.data.frames import FrameStep
from feph_finetune.data.keras_files import keras_file_problem
from feph_finetune.errors import ProblemsError
from feph_finetune.hook_results import normalised_state, state_problem
from feph_finetune.invocation import RECORD_KEY as INVOCATION, matrix_command
from feph_finetune.config.options import option_problems
from feph_finetune.plugins import PluginCallError, Plugins, describe_error, error_text, is_plugin_failure, plugin_code
from feph_finetune.results.store import RESULT_FILE, atomic_folder, output_folder_problem, write_arrays, write_json, write_model

FORMAT = "feph_finetune-bundle"
#: Raise when a bundle's layout or the manifest's meaning changes; older readers refuse newer bundles.
FORMAT_VERSION = 1
#: The format versions :func:`read_manifest` reads (versions are numbered from 1).
READABLE_VERSIONS = (1,)
MANIFEST = "bundle.json"
#: The largest model input a manifest may give (pixels a side), beyond any face model's: a far
#: larger one (hand-edited) would make each frame's array gigabytes.
MAX_INPUT_SIZE = 4096
MODEL_FILE = "model.keras"
STATE_FILE = "state.npz"
#: The largest ``state.npz`` read (bytes): fitted preprocessing state (statistics, a PCA basis) is
#: small; the file is held whole in memory.
MAX_STATE_BYTES = MAX_JSON_BYTES


class BundleError(ProblemsError):
    """MODEL is not a usable bundle (missing, not a bundle, newer format, a plugin missing...);
    ``problems``: one line each."""


# --- writing -------------------------------------------------------------------------------------


def fitted_states(steps: Sequence[tuple[str, Preprocessing]]) -> list[dict[str, np.ndarray] | None]:
    """What each of ``steps`` (the run's preprocessing steps after ``fit``) learned from the
    training split, as a bundle stores it: its ``state()`` as arrays, None for a step without
    ``state``.

    A run that saves its model calls this before training, so that a step whose state cannot
    be stored fails the run at once, as its plugin's failure (:class:`PluginCallError`): one
    that fits but offers no ``state``, one whose ``state()`` raises or returns what ``predict``
    could not read back (:func:`feph_finetune.hook_results.state_problem`: an object array).
    """
    states: list[dict[str, np.ndarray] | None] = []
    for name, step in steps:
        if step.state is None:
            if step.fit is not None:
                raise PluginCallError(name, "preprocess", PluginError("the step learns from the training split (fit) but offers no state() to save; the model cannot be bundled"))
            states.append(None)
            continue
        state = _call(name, step.state)
        if problem := state_problem(state):
            raise PluginCallError(name, "preprocess", PluginError(f"{problem}; the model cannot be bundled"))
        states.append(normalised_state(state))
    return states


def write_bundle(folder: Path, run: Any, steps: Sequence[tuple[str, Preprocessing]], states: Sequence[Mapping[str, np.ndarray] | None],
                 model: Any, versions: Mapping[str, Any]) -> Path:
    """Write ``run``'s bundle to ``folder``: the model, the fitted preprocessing state, the manifest.

    ``steps`` are the run's preprocessing steps (``RunData.preprocessing``), ``states`` what
    :func:`fitted_states` gave for them; ``run`` is a :class:`feph_finetune.config.matrix.Run`.
    The manifest is written last.
    """
    folder = Path(folder)
    entries, arrays = [], {}
    for index, ((name, step), state) in enumerate(zip(steps, states, strict=True)):
        entries.append({"plugin": name, "options": dict(run.config["options"].get(name, {})), "state": None if state is None else f"{index}"})
        arrays.update({f"{index}/{key}": value for key, value in (state or {}).items()})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST).unlink(missing_ok=True)  # an interrupted rewrite must not leave a stale manifest
    write_model(folder / MODEL_FILE, model)
    if arrays:
        write_arrays(folder / STATE_FILE, **arrays)
    else:
        (folder / STATE_FILE).unlink(missing_ok=True)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": MODEL_FILE,
        "input_size": run.config["input_size"],
        "classes": list(run.classes),
        "preprocess": entries,
        "run": {"id": run.id, "experiment": run.experiment, "label": run.label, "phase": run.phase, "fold": run.fold, "seed": run.seed},
        "config": run.config,
        "versions": dict(versions),
    }
    write_json(folder / MANIFEST, manifest)
    return folder


def _call(plugin: str, function, *args):
    with plugin_code(plugin, "preprocess"):
        return function(*args)


# --- finding and reading -------------------------------------------------------------------------


def find_bundle(path: Path) -> Path:
    """The bundle folder that ``path`` names (a run directory with a saved model is one).

    Raises :class:`BundleError` saying what ``path`` is instead and how to get a bundle.
    """
    path = Path(path)
    if problem := lookup_problem(path):
        raise BundleError(f"{path}: {problem}")
    if not path.exists():
        raise BundleError(f"{path}: {NO_SUCH_FILE_OR_FOLDER}")
    if path.is_dir() and (problem := regular_file_problem(path / MANIFEST)):
        raise BundleError(f"{path / MANIFEST}: {problem}")
    if path.is_dir() and (path / MANIFEST).is_file():
        return path
    if path.is_file() and (path.parent / MANIFEST).is_file():
        raise BundleError(f"{path}: a file of the model bundle {path.parent or '.'}; give that folder, not its {path.name}")
    hint = "a bundle is a folder with bundle.json and model.keras: the run directory of a run with save_model = true, or a folder written by `python -m feph_finetune export RUN_DIR OUT`"
    if path.is_file() and path.suffix in (".keras", ".h5"):
        raise BundleError(f"{path}: a bare Keras model file is not a bundle (it does not say how frames were cropped and normalised); {hint}")
    if path.is_dir() and (path / MODEL_FILE).is_file():
        raise BundleError(f"{path}: holds {MODEL_FILE} but no {MANIFEST} (saved before bundles existed, or interrupted); {rerun_with_model(path)}")
    if path.is_dir() and (path / RESULT_FILE).is_file():
        if not _fine_tuned(path):
            raise BundleError(f"{path}: {NO_FT_HAS_NO_MODEL}")
        raise BundleError(f"{path}: this run saved no model; {rerun_with_model(path)}")
    raise BundleError(f"{path}: not a model bundle (no {MANIFEST}); {hint}")


#: What ``predict`` and ``export`` say of a No-FT run's folder, and what to do instead: running it
#: again with ``save_model`` would save nothing (:func:`saves_model`), so no command is offered.
NO_FT_HAS_NO_MODEL = ("a No-FT run (fine_tune = false) evaluates the pretrained model as it is and trains no model, so it has none "
                      "to predict with or export (save_model saves nothing for it); to predict, run a fine-tuned experiment "
                      "(fine_tune = true) with save_model = true and give its run directory")


def saves_model(config: Mapping[str, Any]) -> bool:
    """Whether a run of ``config`` (a run's resolved configuration) writes a model bundle:
    ``save_model`` asks for one, and only fine-tuning makes one (No-FT trains no model)."""
    return bool(config["save_model"]) and bool(config["fine_tune"])


def _fine_tuned(run_dir: Path) -> bool:
    """Whether the run in ``run_dir`` fine-tuned, as its ``config.json`` records; True where it
    records nothing readable (a run of an older version: the suggestion to save is the better guess)."""
    try:
        fine_tune = read_json_file(run_dir / "config.json")["config"]["fine_tune"]
    except (OSError, ValueError, KeyError, TypeError):
        return True
    return fine_tune is not False


def rerun_with_model(run_dir: Path) -> str:
    """How to give the run in ``run_dir`` a model bundle: a finished run is run again with
    ``--force`` (``save_model`` does not change the run's id, so without it the run is skipped as
    finished); a failed or timed-out one is run again by the matrix anyway, so no ``--force``.
    The command is the one that made the run (its ``config.json``'s record:
    :mod:`feph_finetune.invocation`), into the folder that holds it."""
    run_dir = Path(run_dir)
    try:
        record = read_json_file(run_dir / RESULT_FILE)
        experiment, phase, status, error = str(record["experiment"]), str(record["phase"]), record.get("status"), record.get("error")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        experiment, phase, status, error = "NAME", "PHASE", "done", None
    made_by = _invocation_of(run_dir)
    finished = status == "done"
    command = matrix_command(made_by, run_dir.parent, [experiment], phase, [f"{dotted_key(['experiments', experiment, 'save_model'])}=true"], force=finished)
    if made_by is None:
        command += " (with --demo, if the demo made it, and the --set options it was made with)"
    if not finished:
        why = "timed out" if isinstance(error, dict) and error.get("type") == "TimedOut" else "failed"
        return f"the run {why}, so the matrix runs it again; with save_model it saves the model: {command}"
    return f"run it again with save_model and --force (saving a model keeps the run's id, so without --force the finished run is skipped): {command}"


def _invocation_of(run_dir: Path) -> dict[str, Any] | None:
    """The record of the command that made the run in ``run_dir`` (None for a run written before
    runs recorded it, or an unreadable ``config.json``)."""
    try:
        made_by = read_json_file(run_dir / "config.json")[INVOCATION]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return made_by if isinstance(made_by, dict) else None


def read_manifest(folder: Path) -> dict[str, Any]:
    """The checked manifest of the bundle in ``folder``.

    Raises :class:`BundleError` for an unreadable manifest, another format, a newer format version
    (upgrade feph_finetune) or a missing part.
    """
    path = Path(folder) / MANIFEST
    try:
        manifest = read_json_file(path)
    except UnreadableFile as error:
        raise BundleError(f"{path}: cannot read the manifest: it {error}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{path}: not a feph_finetune bundle manifest (format is not {FORMAT!r})")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise BundleError(f"{path}: format_version must be an integer, not {version!r}")
    if version > FORMAT_VERSION:
        raise BundleError(
            f"{path}: bundle format version {version} is newer than this feph_finetune {feph_finetune.__version__} reads "
            f"(up to {FORMAT_VERSION}); upgrade feph_finetune to use this model"
        )
    if version not in READABLE_VERSIONS:
        raise BundleError(f"{path}: format_version {version} is not a bundle format version; this feph_finetune reads {', '.join(map(str, READABLE_VERSIONS))}")
    missing = [key for key in ("model", "input_size", "classes", "preprocess", "run", "config") if key not in manifest]
    if missing:
        raise BundleError(f"{path}: the manifest lacks {', '.join(missing)}")
    problems = _shape_problems(manifest)
    if problems:
        raise BundleError(*(f"{path} {key}: {message}" for key, message in problems))
    model = Path(folder) / manifest["model"]
    if not model.resolve().is_relative_to(Path(folder).resolve()) or Path(manifest["model"]).is_absolute():
        raise BundleError(f"{path} model: {manifest['model']!r} is outside the bundle folder; the model file must lie inside it (e.g. {MODEL_FILE!r})")
    if problem := regular_file_problem(model):
        raise BundleError(f"{model}: the bundle's model file {problem}")
    if not model.is_file():
        raise BundleError(f"{model}: the bundle's model file is missing")
    return manifest


def _shape_problems(manifest: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(key, why) for each manifest value of the wrong type; what :func:`write_bundle` writes has none."""
    problems = []

    def expect(key: str, value: Any, ok: bool, what: str) -> None:
        if not ok:
            problems.append((key, f"expected {what}, got {value!r}"))

    expect("model", manifest["model"], isinstance(manifest["model"], str) and bool(manifest["model"]), "a file name")
    size = manifest["input_size"]
    expect("input_size", size, isinstance(size, int) and not isinstance(size, bool) and 0 < size <= MAX_INPUT_SIZE, f"a positive integer (pixels) up to {MAX_INPUT_SIZE}")
    classes = manifest["classes"]
    if isinstance(classes, list) and classes and all(isinstance(name, str) and name for name in classes) and len(set(classes)) < len(classes):
        repeated = sorted({name for name in classes if classes.count(name) > 1})
        problems.append(("classes", f"expected distinct names (one prediction column each), got {', '.join(map(repr, repeated))} more than once"))
    else:
        expect("classes", classes, isinstance(classes, list) and bool(classes) and all(isinstance(name, str) and name for name in classes), "a list of class names")
    run = manifest["run"]
    expect("run", run, isinstance(run, dict) and {"id", "experiment", "phase", "fold", "seed"} <= set(run), "an object with id, experiment, phase, fold, seed")
    if isinstance(run, dict):
        problems += _run_problems(run)
    expect("config", manifest["config"], isinstance(manifest["config"], dict), "an object")
    steps = manifest["preprocess"]
    expect("preprocess", steps, isinstance(steps, list), "a list of steps")
    for index, entry in enumerate(steps if isinstance(steps, list) else []):
        key = f"preprocess[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("plugin"), str) or "options" not in entry:
            problems.append((key, f"expected an object with plugin, options and state, got {entry!r}"))
            continue
        expect(f"{key}.options", entry["options"], isinstance(entry["options"], dict), "an object")
        expect(f"{key}.state", entry.get("state"), entry.get("state") is None or isinstance(entry.get("state"), str), "null or a key prefix of state.npz")
    return problems


def _run_problems(run: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(key, why) for each of the manifest's ``run`` values of the wrong type or range, checked as
    a ``result.json``'s same fields are (:class:`~feph_finetune.results.records.RunRecord`): the
    id names the model in ``predict``'s output and its rows."""
    from feph_finetune.results.records import RecordShapeError, RunRecord

    known = {key: run.get(key) for key in ("id", "experiment", "label", "phase", "fold", "seed")}
    problems = [] if isinstance(known["id"], str) and known["id"] else [("run.id", f"expected the run's id (non-empty text), got {known['id']!r}")]
    try:
        RunRecord.from_json(known)
    except RecordShapeError as error:
        problems += [(f"run.{problem.split(':', 1)[0]}", problem.split(": ", 1)[1]) for problem in error.problems]
    return problems


# --- loading -------------------------------------------------------------------------------------


@dataclass
class Bundle:
    """A loaded bundle: its manifest, its rebuilt preprocessing steps and (once loaded) the model."""

    folder: Path
    manifest: dict[str, Any]
    steps: list[tuple[str, Preprocessing]]
    model: Any = None

    @property
    def input_size(self) -> int:
        return int(self.manifest["input_size"])

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.manifest["classes"])

    @property
    def run_id(self) -> str:
        return str(self.manifest["run"]["id"])

    @property
    def frame_steps(self) -> list[FrameStep]:
        return [FrameStep(name, step) for name, step in self.steps if step.frame is not None]

    @property
    def batch_steps(self) -> list[tuple[str, Preprocessing]]:
        return [(name, step) for name, step in self.steps if step.batch is not None]


def open_bundle(path: Path, plugins: Plugins) -> Bundle:
    """Find and read the bundle ``path`` names and rebuild its preprocessing (no TensorFlow)."""
    folder = find_bundle(path)
    manifest = read_manifest(folder)
    return Bundle(folder, manifest, rebuild_preprocessing(folder, manifest, plugins))


def rebuild_preprocessing(folder: Path, manifest: Mapping[str, Any], plugins: Plugins) -> list[tuple[str, Preprocessing]]:
    """Each stored step from its plugin's ``preprocess`` hook, with the stored options and state."""
    run = manifest["run"]
    for entry in manifest["preprocess"]:
        if not plugins.implements(entry["plugin"], "preprocess"):
            raise BundleError(f"{folder}: the model was trained with the preprocess plugin {entry['plugin']!r}, which is not installed here (`python -m feph_finetune plugins` lists the installed ones)")
    problems = [line for index, entry in enumerate(manifest["preprocess"]) for line in _option_problems(folder, index, entry, plugins)]
    if problems:
        raise BundleError(*problems)
    state = _read_state(folder)
    steps = []
    for entry in manifest["preprocess"]:
        name = entry["plugin"]
        context = RunContext(
            run_id=run["id"], experiment=run["experiment"], phase=run["phase"], fold=run["fold"], seed=run["seed"],
            input_size=int(manifest["input_size"]), config=manifest["config"], options=entry["options"], classes=tuple(manifest["classes"]),
        )
        try:
            step = plugins.call(name, "preprocess", context=context)
            if step is not None and entry["state"] is not None:
                if step.restore is None:
                    raise PluginError("the bundle holds fitted state for this step but the plugin offers no restore()")
                prefix = f"{entry['state']}/"
                step.restore({key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)})
        except PluginCallError as error:
            raise BundleError(f"{folder}: plugin {name!r} refused the bundle's options: {error_text(error.error)}") from error
        except BaseException as error:  # sys.exit() in restore() too (is_plugin_failure)
            if not is_plugin_failure(error):
                raise
            raise BundleError(f"{folder}: plugin {name!r} could not restore its fitted state: {describe_error(error)}") from error
        if step is not None:
            steps.append((name, step))
    return steps


def _option_problems(folder: Path, index: int, entry: Mapping[str, Any], plugins: Plugins) -> list[str]:
    """The manifest's options for one step checked against its plugin's declarations, as a
    configuration's are (:func:`feph_finetune.config.options.option_problems`); one line per problem,
    naming the manifest, the key and the plugin. Paths are not checked for existence: the
    plugin names a missing file itself when it needs one."""
    name, where = entry["plugin"], f"{Path(folder) / MANIFEST} preprocess[{index}].options"
    try:
        declarations = plugins.option_declarations(name)
    except PluginCallError as error:
        return [f"{where}: {error}"]
    lines = []
    for key, value in entry["options"].items():
        if key not in declarations:
            lines.append(f"{where}.{key}: plugin {name!r} has no option {key!r}{close_match(key, declarations)}; its options: {', '.join(declarations) or 'none'}")
            continue
        lines += [f"{where}.{key}: plugin {name!r}: {message}" for message in option_problems(value, declarations[key], check_paths=False)]
    return lines


def _read_state(folder: Path) -> dict[str, np.ndarray]:
    path = Path(folder) / STATE_FILE
    try:
        data = read_user_file(path, MAX_STATE_BYTES)
    except UnreadableFile as error:
        if error.missing:
            return {}
        raise BundleError(f"{path}: cannot read the fitted preprocessing state: it {error}") from None
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as stored:
            return {key: stored[key] for key in stored.files}
    except Exception as error:
        raise BundleError(f"{path}: cannot read the fitted preprocessing state: {error}") from error


def load_model(bundle: Bundle) -> Any:
    """Load the bundle's Keras model in safe mode (imports TensorFlow, quietly) and check its shapes."""
    from feph_finetune.training.quiet_tensorflow import import_tensorflow

    import_tensorflow()
    import keras

    path = bundle.folder / bundle.manifest["model"]
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as error:
        problem = keras_file_problem(path, whole_model=True)  # what the file is, where Keras says "File not found" for a .keras that is no zip
        raise BundleError(problem or f"{path}: Keras cannot load the model: {type(error).__name__}: {' '.join(str(error).split())[:400]}") from error
    size, classes = bundle.input_size, len(bundle.classes)
    if tuple(model.inputs[0].shape)[1:] not in ((size, size, 3), (None, None, 3)) or model.outputs[0].shape[-1] != classes:
        raise BundleError(f"{path}: the model maps {tuple(model.inputs[0].shape)[1:]} to {model.outputs[0].shape[-1]} outputs, but the manifest says {size}x{size}x3 images and {classes} classes")
    bundle.model = model
    return model


# --- exporting -----------------------------------------------------------------------------------


def export_bundle(run_dir: Path, out: Path) -> Path:
    """Copy the bundle of the finished run in ``run_dir`` to the new folder ``out``.

    The manifest is checked first; ``out`` must not exist or be an empty folder. Raises
    :class:`BundleError`.
    """
    folder = find_bundle(run_dir)
    manifest = read_manifest(folder)
    out = Path(out)
    found = classify_path(out)
    if found.exists and found.kind != FOLDER:
        raise BundleError(f"{out}: is {found.described}; export writes a folder: give a new folder's name")
    if found.exists and any(out.iterdir()):
        raise BundleError(f"{out}: already exists and is not an empty folder; choose a new folder")
    if problem := output_folder_problem(out):  # a link to nothing or a loop, an unwritable parent
        raise BundleError(f"{out}: {problem}")
    with atomic_folder(out, follow_link=True) as staging:
        for name in (manifest["model"], STATE_FILE, MANIFEST):
            if (folder / name).is_file():
                shutil.copyfile(folder / name, staging / name)  # modes from the umask, as for any new file
    return out

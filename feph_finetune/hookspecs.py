"""The hook specifications: everything a plugin can contribute to a run.

An experiment in the TOML names, for each hook, which plugins serve it (``model = "mobilenet"``,
``preprocess = ["face_crop", "normalize"]``...; ``[dataset] format`` names the ``load_dataset`` one). The core calls a hook on each named plugin alone,
one at a time and in the TOML's order, so a plugin is never asked to act in an experiment that did
not name it. Each call therefore has exactly one implementation, and its return value is the
result (all hooks are ``firstresult``). A plugin that returns None contributes nothing.

Every hook receives ``context`` (:class:`feph_finetune.RunContext`): the run's id, seed, input
size, resolved configuration, and the calling plugin's own ``options`` with their defaults filled
in. Implementations may accept only the arguments they use (pluggy passes them by name); one
that asks for an argument its hook does not offer, or implements a hook not specified here, is
not registered: ``python -m feph_finetune plugins`` lists it as broken with the reason, and a
configuration that names it is refused with that reason.
``register_executors`` is the exception: it is called on every plugin, once, and adds to a registry.
The tracking hooks (``track_*``) are called on the plugins the ``[tracking]`` table enables, for
every run of the matrix.

A hook that raises fails its run, and only its run (a tracking hook never does: see
``track_run_start``): the error is recorded with the plugin's name
and the rest of the matrix goes on. Raise :class:`feph_finetune.PluginError` for a clear message.
A hook that returns what its specification does not promise fails the same way, before the core
uses the result (:mod:`feph_finetune.hook_results`); at configuration time (``plugin_traits``,
``model_input``) the configuration is refused with exit 2.
"""

from __future__ import annotations

import pluggy

PROJECT = "feph_finetune"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

#: The traits a ``plugin_traits`` implementation may declare (see that hook).
TRAITS = ("normalizes_pixels", "normalizes_input", "pretrained_classifier")


@hookspec(firstresult=True)
def plugin_options():
    """Declare the plugin's options: their defaults and the values they accept.

    Called when a configuration is validated, before any work, for every plugin an experiment
    names. Returns a dict ``{option: declaration}``; the TOML's ``[*.options.<plugin>]`` table may
    set only these keys. Each declaration is either

    - a plain default (``"mode": "double"``): the option accepts values of the default's type (an
      int is accepted for a float; a default of None accepts any value); or
    - a :class:`feph_finetune.Option` (``"margin": Option(0.2, minimum=0, help=...)``), which
      adds ``choices``, numeric bounds (``minimum``/``maximum``, inclusive unless
      ``exclusive_minimum``/``exclusive_maximum``), ``finite`` (on by default: no inf or nan),
      ``path="file"`` (an existing file, or one of ``choices``), ``suffixes``, ``retired`` values
      with a hint, and a ``check`` function for any other rule (one that raises is this
      plugin's failure, reported at the value's place). A float option's value must keep its
      meaning in float32 (5e-324, 0 there, is refused).

    Defaults must be JSON values (they go into the run's id), and a number default must lie
    within its own Option's bounds. Every problem is reported at once with the TOML line that set the value, and ``--dry-run``
    exits with code 2, so a hook never needs to re-check its options: ``context.options`` holds
    checked values with the defaults filled in. A plugin without options need not implement this
    hook.
    """


@hookspec(firstresult=True)
def plugin_traits(options):
    """Say what the plugin does, with these options, that other plugins of an experiment depend on.

    Called when a configuration is validated, before any work, for every plugin an experiment
    names, with ``options``: the plugin's checked options, defaults filled in. Returns a
    collection of trait names, or None for none. The core knows these traits and refuses, before
    any work, experiments that combine plugins wrongly:

    - ``"normalizes_pixels"`` (a ``preprocess`` plugin): its ``batch`` step normalises pixel
      values (:attr:`feph_finetune.Preprocessing.normalizes`).
    - ``"normalizes_input"`` (a ``build_model`` plugin): the model normalises raw 0-255 pixels
      itself (:attr:`feph_finetune.BuiltModel.normalizes_input`), so no ``preprocess`` plugin
      with ``"normalizes_pixels"`` may be used with it.
    - ``"pretrained_classifier"`` (a ``build_model`` plugin): the model comes with a pretrained
      expression classifier (:attr:`feph_finetune.BuiltModel.pretrained`), which No-FT
      experiments (``fine_tune = false``) evaluate; without it they are refused.

    Traits are promises: the run still checks the objects the hooks return.
    """


@hookspec(firstresult=True)
def model_input(options):
    """Say what input side the model a ``build_model`` plugin builds with these options is made for.

    Called when a configuration is validated, before any work, with the plugin's checked options
    (defaults filled in), and without TensorFlow: read files' headers only. Returns None (no
    preference: the experiment's ``input_size``, default 224, applies) or a dict:

    - ``"size"``: the side in pixels the model is made for (EfficientNet-B2: 260). An experiment
      that does not set ``input_size`` (nor its ``[defaults]``, ancestors or grid) runs at it.
    - ``"fixed"``: True when the model takes no other side (a whole-model file with a fixed input
      shape); an experiment whose ``input_size`` differs is then refused before any work.
    - ``"classes"``: the class names of the model's pretrained expression classifier, in its
      output order (default: FePh's seven). A No-FT experiment (``fine_tune = false``) on a
      dataset with a class these lack (compared ignoring case, as the run maps them:
      :func:`feph_finetune.data.class_mapping.map_classes`) is refused before any work, naming
      the classes.
    """


@hookspec(firstresult=True)
def load_dataset(root, settings, decode):
    """Read a dataset: the samples, the classes, everything dropped and why, a fingerprint.

    Called on the plugin that ``[dataset] format`` names (default ``feph``), once when a
    configuration is validated (``decode=False``: list and stat the files, decode none, so that
    checking stays cheap) and once per process that runs the matrix or describes the data
    (``decode=True``: a file that does not decode is dropped as ``unreadable``). The
    fingerprint must not depend on ``decode``, and must change with what the data holds: the
    labels (the bytes of the file ``labels`` names, where the format reads one) and the images
    (each one's name, and its size and time or contents), since run ids take ``labels`` and
    ``images`` to be known by it rather than by their spelling. Arguments:

    - ``root``: the dataset's folder (a ``pathlib.Path``, ``~`` expanded; it exists).
    - ``settings``: the whole ``[dataset]`` table with defaults filled in: the core keys (``root``,
      ``labels``, ``images``, ``group_by``, ``group_pattern``...) and the options this plugin
      declares with ``plugin_options``, which are set as ``[dataset]`` keys and checked with the
      rest of the configuration before any work.
    - ``decode``: whether to decode each kept image.

    Returns a :class:`feph_finetune.Dataset`: ``classes`` in label order (they become the model's
    outputs and the reports' columns), one :class:`feph_finetune.Sample` per kept image (its
    ``groups`` offer the keys ``group_by`` may name; ``split`` marks data that comes split
    already), every :class:`feph_finetune.DroppedEntry` with a reason declared in
    ``drop_reasons`` (text to text), a ``fingerprint`` that is text and ``notes`` that are a list
    of texts. Each sample's ``path`` is a ``pathlib.Path``, its ``label`` a class index (a numpy
    integer is taken as an int), its ``groups`` text keys to text, its ``frame`` a whole number
    from 0 or None. Raise :class:`feph_finetune.DatasetError` for a layout that cannot be read:
    it is reported like a configuration error (exit 2), naming the setting in its ``hint``.
    ``feph_finetune.read_csv_rows``, ``resolve_inside``, ``samples_from_rows`` and
    ``files_fingerprint`` do the robust parts of reading a labels file.
    """


@hookspec(firstresult=True)
def preprocess(context):
    """Contribute a preprocessing step to the input pipeline of training and test data.

    Called once per run, for each plugin in the experiment's ``preprocess`` list, before any image
    is loaded. Returns a :class:`feph_finetune.Preprocessing` (a cached per-image ``frame`` step
    such as face cropping, a ``fit`` on the training split and a per-batch ``batch`` transform
    such as normalisation), or None. Steps apply in the list's order. Its parts are functions or
    None, ``cache_key`` text, ``normalizes`` True or False; what the functions return is checked
    where the core calls them: ``frame`` a :class:`feph_finetune.FrameResult` with a uint8 RGB
    image (H, W, 3), ``batch`` a float batch of the shape it was given.

    Also called by ``predict`` to rebuild the step of a saved model, with the options stored in
    its bundle: a step that learns in ``fit`` must then offer ``state``/``restore`` (see
    :class:`feph_finetune.Preprocessing`), and ``state()`` must return a dict of names (text, not
    empty) to arrays of numbers, bools or text (or what ``np.asarray`` makes into those), which
    ``numpy.load`` reads without pickling; otherwise a run with ``save_model = true`` fails,
    naming the plugin, right after ``fit``, before training.
    """


@hookspec(firstresult=True)
def augment(context):
    """Contribute an augmentation of the training data (never of test data).

    Called once per run, for each plugin in the experiment's ``augment`` list, after
    preprocessing. Returns a :class:`feph_finetune.Augmentation` (a one-off ``expand`` of the
    training arrays, and/or a random per-batch ``batch`` transform), or None; its parts are
    functions or None. ``expand`` must return ``(images, labels)``: uint8 images of the size it
    was given and one class index (0..classes-1) per image; ``batch`` a float batch of the
    shape it was given.
    """


@hookspec(firstresult=True)
def build_model(context):
    """Build the classifier to fine-tune.

    Called once per run on the experiment's ``model`` plugin, after the data is ready; this is
    where TensorFlow is first needed, so import Keras inside the implementation. The random
    initialisation is already seeded. Returns a :class:`feph_finetune.BuiltModel` whose ``model``
    is a Keras model with one softmax output per class of ``context.classes``, naming the new
    ``head`` layers (a list of layers of that model: a head stage trains them) and, for the
    No-FT baseline, the ``pretrained`` Keras model (or None) with its class order
    (``pretrained_classes``: distinct non-empty names); ``normalizes_input`` True or False.
    """


@hookspec(firstresult=True)
def optimizer_schedule(context):
    """Say how to train: the stages of fine-tuning, each with its optimizer.

    Called once per run on the experiment's ``optimizer`` plugin, after ``build_model`` (not at
    all for a No-FT experiment). Returns a list of :class:`feph_finetune.TrainingStage`, run in
    order (at least one; 0 epochs in a stage is allowed): typically a ``head`` stage with the
    base frozen, then ``all`` stages. Each stage has a ``name`` (text, not blank), ``trainable``
    ``"head"`` or ``"all"``, ``epochs`` a whole number from 0 (a numpy integer is taken as an
    int), an ``optimizer`` that is a Keras optimizer instance, a ``label`` that is text. A stage
    may ``wrap`` the model in one with its own ``train_step`` (Sharpness-Aware Minimization):
    a function that, given the Keras model, returns a Keras model holding all of its weights
    (checked when the stage begins).
    """


@hookspec(firstresult=True)
def weight_classes(labels, context):
    """Weight the classes of the loss.

    Called once per run on the experiment's ``class_weights`` plugin, if it names one, with
    ``labels``: the class indices (int array, read-only: the model trains on them after the
    hook) of the training split only, before augmentation.
    Returns ``{class_index: weight}`` for every class index in ``range(len(context.classes))``
    and no other key (numpy integers are taken as ints), each a real number (int, float, a numpy
    number or a ``Fraction``: the core uses it as a float) that is 0 (leaves the class out of
    the loss) or from :data:`feph_finetune.hook_results.MIN_CLASS_WEIGHT` (1e-6) to
    :data:`~feph_finetune.hook_results.MAX_CLASS_WEIGHT` (1e6), not all 0; or None for no
    weighting.
    """


@hookspec(firstresult=True)
def evaluate(y_true, y_prob, context):
    """Measure the trained model on the test split.

    Called once per run, for each plugin in the experiment's ``evaluate`` list, after
    prediction, with ``y_true`` (int array of class indices, N) and ``y_prob`` (float array,
    N x classes), both read-only (later plugins and ``predictions.npz`` use them: copy one to
    change it). Returns a dict of JSON-serialisable metrics (no NaN or infinity), each named by
    text that is not empty or blank (a report column's title), merged into the run's results
    (later plugins may not overwrite earlier keys), or None. Scalars in [0, 1] named
    ``accuracy``, ``avg_sensitivity`` and a ``sensitivity`` dict ``{class: value}`` fill the
    paper's report columns; other scalar metrics get columns of their own. The run's
    ``result.json`` must read back with them (nested at most 64 levels there, no two keys that
    are one once written as text, at most 256 MiB).
    """


@hookspec
def register_executors(register):
    """Contribute executors: the backends that decide where runs execute and how many at once.

    Called once on every plugin (not only on those an experiment names) when the command line
    resolves ``--executor NAME`` or the TOML's ``[executor]`` table, before any work. Call
    ``register(cls)`` for each executor: a subclass of :class:`feph_finetune.Executor` with a
    unique ``name``, a one-line ``summary``, its ``options`` (``{option: Option(...)}`` or
    ``{option: default}``, as ``plugin_options`` declares a plugin's; set in the TOML's
    ``[executor.<name>]`` table and checked against them with the whole configuration), and an ``execute(jobs,
    report, here)`` that runs each :class:`feph_finetune.RunJob` through
    :func:`feph_finetune.execute_run` (in this process or elsewhere) and leaves a ``result.json``
    per job. An executor also enforces each run's ``timeout`` (seconds from the run's ``started``
    event, 0: none): it stops the run, the other runs go on, and the run is recorded with
    :func:`feph_finetune.execution.job.timed_out_record` saying where it was (the run's
    ``activity`` and ``progress`` events, read by :class:`feph_finetune.execution.job.Whereabouts`);
    one that cannot stop a run records it as failed, saying so, rather than let it run on. It
    calls ``report_finished`` after each run (which stops the matrix when the results folder's
    disk is full), keeps the command's SIGTERM handler in place, and raises
    :class:`feph_finetune.ExecutorError` when it cannot start at all (an unreachable cluster).
    The built-in ``inline``, ``process`` and ``ray`` come through this hook too, the way
    llm's ``register_models`` or datasette's ``publish_subcommand`` contribute backends. A name
    registered twice is an error naming the plugin. Returns None.
    """


@hookspec(firstresult=True)
def track_run_start(run, context):
    """Start tracking a run: a tracking backend opens its record of it (TensorBoard's event file,
    an MLflow run).

    Called in the run's own process (whatever the executor), on each plugin that ``[tracking]
    plugins`` (or ``--track NAME``) enables, after the run's ``config.json`` is written and before
    its data is prepared. ``run`` is a :class:`feph_finetune.TrackedRun` (id, experiment, phase,
    fold, resolved configuration, data fingerprint, run folder); ``context.options`` holds the
    plugin's options from ``[tracking.<plugin>]``, checked before any work like every plugin's.
    Returns None.

    Tracking never costs a result: when a tracking hook raises, the run goes on, the person
    running the matrix gets one warning for the run, the run's ``result.json`` gets a note saying
    what was not logged, and the plugin's other tracking hooks are not called again for that
    run. A run that is resumed after an interruption starts anew, so a backend that finds a record
    of the same ``run.id`` left unfinished should replace or close it; a finished run is never
    tracked again, unless ``--force`` reruns it (then as a new run).
    """


@hookspec(firstresult=True)
def track_epoch(run, stage, epoch, logs, context):
    """Log one epoch of training.

    Called in the run's own process after each epoch of each training stage (not at all for a
    No-FT run), with ``stage``: the stage's name (``head``, ``adam``, ``sgd``...), ``epoch``: the
    epoch counted from 1 across stages (the step of a curve that spans the stages; the same number
    as in ``history.json``), and ``logs``: Keras' values of the epoch as floats (``loss``,
    ``accuracy``, and ``val_loss``, ``val_accuracy`` with a validation split), the same as the
    epoch's entry of ``history.json``. Returns None.
    """


@hookspec(firstresult=True)
def track_run_end(run, status, record, context):
    """Finish tracking a run.

    Called in the run's own process when the run ends, whether it succeeded or failed, after its
    files are written and just before its ``result.json``: ``status`` is ``"done"`` or
    ``"failed"``, ``record`` a copy of the content of ``result.json`` as it will be written
    (the tracker's own: what it changes is not written; ``metrics``:
    the evaluate plugins' metrics, None when the run failed; ``error``; ``timing``), and the
    run's folder (``run.run_dir``) holds ``config.json``, ``metrics.json``, ``history.json`` and
    ``predictions.npz`` of a run that is done. Not called for a run its executor had to stop
    (a ``timeout``, a crashed process). A call that does not return within the run's
    ``timeout`` is stopped with the run, which keeps its result, with a warning. Returns None.
    """


@hookspec(firstresult=True)
def track_matrix_end(matrix, records, output, options):
    """Log what spans runs, such as a configuration's mean and spread over its folds.

    Called in the process that drives the matrix (not a run's), on each enabled tracking plugin,
    after the runs of an invocation have ended, even when every run was already finished: so an
    implementation must be idempotent (find and update what it logged before rather than add).
    ``matrix`` is the configuration's name (as :attr:`feph_finetune.TrackedRun.matrix`),
    ``records`` the ``result.json`` records (dicts) of the selected runs that are done,
    ``output`` the results folder (:class:`pathlib.Path`), ``options`` the plugin's options.
    A failure is one warning; it changes no run. A call that has not returned after
    :data:`feph_finetune.execution.tracking.MATRIX_HOOK_BOUND_S` is left running in its thread,
    with a warning, and the command finishes without it. Returns None.
    """


@hookspec(firstresult=True)
def track_runs_stopped(matrix, run_ids, output, options):
    """Close what was logged of runs that were stopped before they ended: the matrix was
    interrupted (Ctrl-C, SIGTERM) while they ran, so ``track_run_end`` never came.

    Called in the process that drives the matrix, after the executor has stopped the runs and
    before the command exits 130, on each enabled tracking plugin: ``run_ids``: the ids of the
    selected runs without a result (those that were running among them; some may never have
    started), ``matrix``, ``output`` and ``options`` as for :func:`track_matrix_end`. A
    SIGKILL reaches no code: what it stops stays open until the matrix resumes the run. A
    failure, or a call still running after
    :data:`feph_finetune.execution.tracking.MATRIX_HOOK_BOUND_S`, is one warning. Returns None.
    """

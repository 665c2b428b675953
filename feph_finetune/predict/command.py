"""``python -m feph_finetune predict``: checks, progress, the per-input summary, the exit code.

Every argument is checked before any work (output suffix, plot and matplotlib, numbers, the
bundle's manifest and plugins); then each input is opened. A bad input is reported and skipped,
the good ones are still processed, and the command exits with 2 naming the bad ones.
"""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from feph_finetune.errors import EXIT_INTERRUPTED, EXIT_OK, print_error
from feph_finetune.printable import counted, few_named


def argument_problems(args) -> list[str]:
    """What is wrong with the options themselves, before MODEL and the inputs are looked at."""
    from feph_finetune.config.flags import PREDICT_NUMBERS, flag_problems_of
    from feph_finetune.results.figures import PLOTS_INSTALL, plots_available
    from feph_finetune.predict.apply import OUTPUT_SUFFIXES
    from feph_finetune.results.store import output_file_problem

    problems = []
    if args.out is not None and args.out.suffix.lower() not in OUTPUT_SUFFIXES:
        problems.append(f"--out {args.out}: the file name must end in {' or '.join(OUTPUT_SUFFIXES)} (CSV or JSON lines)")
    if args.plot is not None:
        if args.plot.suffix.lower() != ".png":
            problems.append(f"--plot {args.plot}: the file name must end in .png")
        if not plots_available():
            problems.append(f"--plot needs matplotlib, which is not installed: {PLOTS_INSTALL}")
    for option, path in (("--out", args.out), ("--plot", args.plot)):
        problem = None if path is None else output_file_problem(path)
        if problem:
            problems.append(f"{option} {path}: {problem}")
    problems += [str(problem) for problem in flag_problems_of(args, PREDICT_NUMBERS)]
    return problems


def overwritten_inputs(args) -> list[str]:
    """One problem per output (--out, --plot) that is a file predict reads or, an image (the
    ``--plot`` PNG), lies inside an input folder of frames
    (:func:`~feph_finetune.results.store.overwritten_input_problem`): written, it would replace
    the model or an input, or be read as a frame next time. A CSV beside the frames is never read."""
    from feph_finetune.results.store import overwritten_input_problem

    from feph_finetune.predict.inputs import IMAGE_SUFFIXES

    files, folders = read_paths(args.model, args.inputs)
    outputs = [(option, path) for option, path in (("--out", args.out), ("--plot", args.plot)) if path is not None]
    return [f"{option} {path}: {problem}" for option, path in outputs
            if (problem := overwritten_input_problem(path, "predict", files, folders if path.suffix.lower() in IMAGE_SUFFIXES else ()))]


def read_paths(model, inputs: list[str]) -> tuple[list, list]:
    """``(files, folders)`` that predict reads: the model's files (a bundle or run folder's own
    files: none may be written over), the input files, and the input folders (every frame in one
    is read, so nothing may be written into it). Names that cannot be read are left out: the
    checks of MODEL and the inputs say why."""
    from pathlib import Path

    from feph_finetune.data.user_files import FOLDER, classify_path

    model, files = Path(model), [Path(model)]
    if classify_path(model).kind == FOLDER:
        try:
            files = sorted(child for child in model.iterdir() if child.is_file())
        except OSError:  # an unreadable folder: open_bundle names it
            files = []
    kinds = {name: classify_path(name).kind for name in inputs}
    return files + [Path(name) for name in inputs if kinds[name] != FOLDER], [Path(name) for name in inputs if kinds[name] == FOLDER]


def repeated_inputs(names: list[str]) -> list[str]:
    """One problem per input that names a file or folder named before (the same name, another
    spelling, a link to it: the same device and inode, :func:`classify_path`): its rows would
    appear twice in --out and the summary. Refused, not silently merged, so that the command
    line says exactly what was predicted."""
    from feph_finetune.data.user_files import classify_path

    first: dict[tuple[int, int], str] = {}
    problems = []
    for name in names:
        status = classify_path(name).status
        if status is None:
            continue  # missing or unusable: open_input says so
        identity = (status.st_dev, status.st_ino)
        if identity not in first:
            first[identity] = name
        else:
            earlier = first[identity]
            same = "given twice" if earlier == name else f"the same file or folder as INPUT {earlier}"
            problems.append(f"INPUT {name}: {same}; name each input once")
    return problems


def predict_command(args, console: Console, errors: Console) -> int:
    from feph_finetune.cli import load_plugins
    from feph_finetune.predict.bundle import BundleError, load_model, open_bundle
    from feph_finetune.predict.inputs import InputError, open_input
    from feph_finetune.predict.prefetch import FrameStepDidNotReturn

    problems = argument_problems(args) + repeated_inputs(args.inputs) + overwritten_inputs(args)
    if problems:
        return print_error(errors, problems)
    try:
        bundle = open_bundle(args.model, load_plugins())
    except BundleError as error:
        return print_error(errors, [f"MODEL {line}" for line in error.problems])
    inputs, bad = [], {}
    for name in args.inputs:
        try:
            inputs.append(open_input(name, args.every, warn=_warner(errors)))
        except InputError as error:
            bad[name] = str(error)
    if inputs:
        if args.out:
            ensure_output_space(args.out, bundle.classes, args.smooth > 1, inputs)
        try:
            load_model(bundle)
        except BundleError as error:
            return print_error(errors, [f"MODEL {line}" for line in error.problems])
        try:
            summaries = _run(bundle, inputs, args, console, errors)
        except KeyboardInterrupt as stop:
            held = [str(stop)] if isinstance(stop, FrameStepDidNotReturn) else []  # who kept the stop waiting
            for line in [*held, f"interrupted: nothing was written to {args.out}" if args.out else "interrupted"]:
                errors.print(line, markup=False, highlight=False, soft_wrap=True)
            return EXIT_INTERRUPTED
        except BundleError as error:  # a model whose outputs are unusable: --out stays as it was
            return print_error(errors, [f"MODEL {line}" for line in error.problems])
        bad.update({summary.name: few_named(summary.problems) for summary in summaries if summary.problems})
        for note in (note for summary in summaries for note in summary.notes):
            console.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
        print_summary(summaries, bundle, console)
        _finish_outputs(summaries, bundle, args, console, errors)
    if bad:
        return print_error(errors, [message if message.startswith(name) else f"{name}: {message}" for name, message in bad.items()], heading=f"{len(bad)} of {len(args.inputs)} inputs could not be processed in full (everything readable was)")
    return EXIT_OK


def ensure_output_space(out, classes: tuple[str, ...], smooth: bool, inputs: list) -> None:
    """Raise :class:`~feph_finetune.results.store.NoSpaceError` (exit 2, naming ``--out``'s
    folder) when its disk cannot take the rows: checked before the model loads and every frame is
    predicted, not after. What the rows need is known only from below: the header and a row per
    frame the inputs announce (at least one), each cell taking at least its separator."""
    from feph_finetune.predict.apply import columns
    from feph_finetune.results.store import ensure_space, written_path

    fields = columns(classes, smooth)
    frames = max(1, sum(predict_input.total or 0 for predict_input in inputs))
    header = len(",".join(fields).encode()) + 1
    target = written_path(out)
    ensure_space(target.parent, header + frames * len(fields), target.name, at_least=True)


def _run(bundle, inputs, args, console: Console, errors: Console):
    """Predict every source; the rows go to a temporary file renamed to --out only when all are done,
    so an interrupt or a crash leaves --out as it was (absent, or the previous file)."""
    from contextlib import ExitStack

    from feph_finetune.predict.apply import Predictor, RowWriter, Settings, columns
    from feph_finetune.results.store import atomic_path

    predictor = Predictor(bundle, Settings(batch_size=args.batch_size, smooth=args.smooth, every=args.every, series=args.plot is not None), _warner(errors))
    summaries = []
    progress = input_progress(console)
    with ExitStack() as outputs:
        writer = None
        if args.out:
            temporary = outputs.enter_context(atomic_path(args.out, follow_link=True))
            writer = outputs.enter_context(RowWriter(temporary, columns(bundle.classes, args.smooth > 1), suffix=args.out.suffix))
        with progress:
            for predict_input in inputs:
                task = progress.add_task(predict_input.name[-30:], total=predict_input.total)
                summaries.append(predictor.run(predict_input, writer, advance=lambda n, task=task: progress.advance(task, n)))
                progress.remove_task(task)
    console.print(f"{counted(predictor.frames_done, 'frame')} in {predictor.seconds:.1f} s ({predictor.frames_per_second:.1f} frames/s, batch {args.batch_size})", highlight=False)
    return summaries


def input_progress(console: Console) -> Progress:
    """The bar shown per input on a terminal; the input's name (its description) is no markup."""
    return Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), TextColumn("frames"), TimeElapsedColumn(),
                    console=console, transient=True, disable=not console.is_terminal)


def print_summary(summaries, bundle, console: Console) -> None:
    """Per input: frames, faces found, and the share of frames predicted as each class, at the
    console's width. An input's name is whole where it fits beside the numbers, else folded
    (after a ``/`` where it can, else a ``.``, ``_`` or ``-``: :func:`~feph_finetune.results.reports.fold_long_words`)
    but never shortened, so two inputs in different folders never read the same. Classes that do
    not fit beside the name (at least :data:`INPUT_LEAST` cells) go to further tables; where even
    one does not, the name folds narrower, so that no count is cut.

    Class columns are headed by :func:`feph_finetune.results.reports.class_abbreviations`, as in ``report``."""
    from rich.cells import cell_len

    from feph_finetune.printable import printable
    from feph_finetune.results.number_text import format_count, format_number
    from feph_finetune.results.reports import class_abbreviations, names_narrowed, spread_columns

    short = {name: printable(abbreviation) for name, abbreviation in class_abbreviations(bundle.classes).items()}
    headers = ["input", "frames", "faces", *(short[name] for name in bundle.classes)]
    rows = []
    for summary in summaries:
        shares = [f"{format_number(100 * summary.predicted.get(name, 0) / summary.frames, 0)}%" if summary.frames else "-" for name in bundle.classes]
        rows.append([printable(summary.name), format_count(summary.frames), "-" if summary.faces is None else format_count(summary.faces), *shares])
    least = [0, 0, 0, *(4 for _ in bundle.classes)]  # a class column's min_width
    widths = [max([least[column], cell_len(headers[column])] + [cell_len(cells[column]) for cells in rows]) for column in range(len(headers))]
    room = console.width - 2  # the table's edges take a cell each
    widths[0] = _input_width(widths, room)
    for columns in spread_columns(widths, range(3, len(headers)), room):
        inputs = names_narrowed([widths[column] for column in columns], {0: [headers[0], *(cells[0] for cells in rows)]}, room)[0]
        console.print(Text(f"model {printable(bundle.run_id)}: share of frames per predicted class", style="table.title"))  # wraps at the console's width, not the table's
        console.print(_summary_table(headers, rows, columns, least, inputs))


#: The fewest cells the input column gets before class columns move to further tables: enough for
#: a file's name (``sentence3.avi``) or a folder's part of a path on a line of its own.
INPUT_LEAST = 20
#: Display cells between two columns of the summary (``collapse_padding``: one cell each side).
COLUMN_GAP = 2


def _input_width(widths: list[int], room: int) -> int:
    """The input column's width when the tables are laid out: the longest name where it fits
    beside every number column in ``room`` cells, else the room left beside them, but at least
    :data:`INPUT_LEAST` (or the longest name, if shorter)."""
    beside = room - sum(widths[1:]) - COLUMN_GAP * (len(widths) - 1)
    return min(widths[0], max(INPUT_LEAST, beside))


def _summary_table(headers: list[str], rows: list[list[str]], columns: list[int], least: list[int], input_width: int) -> Table:
    """The summary's ``columns`` (the first: the inputs) as a table, each input's name folded to
    ``input_width`` display cells, the numbers never wrapped, each at least ``least`` cells wide."""
    from feph_finetune.results.reports import fold_long_words

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column(Text(headers[0]), width=input_width)
    for column in columns[1:]:
        table.add_column(Text(headers[column]), justify="right", no_wrap=True, min_width=least[column] or None)
    for cells in rows:
        table.add_row(Text(fold_long_words(cells[0], input_width)), *(Text(cells[column]) for column in columns[1:]))
    return table


def _finish_outputs(summaries, bundle, args, console: Console, errors: Console) -> None:
    if args.out:
        console.print(f"rows written to {args.out}", markup=False, highlight=False)
    if args.plot:
        from feph_finetune.predict.plots import plot_probabilities

        smoothing = f", centred mean over {args.smooth} frames" if args.smooth > 1 else ""
        panels = plot_probabilities(summaries, args.plot, f"Class probabilities, model {bundle.run_id}{smoothing}", _warner(errors))
        console.print(f"plot of {counted(panels, 'sequence')} written to {args.plot}" if panels else "no video or frame folder to plot: --plot wrote nothing", markup=False, highlight=False)


def _warner(errors: Console):
    """A function that prints one line as a yellow ``warning:`` on ``errors``, the line no markup."""
    return lambda line: errors.print(f"[yellow]warning:[/yellow] {escape(line)}", markup=True, highlight=False, soft_wrap=True)

"""The command line: run a matrix, and the ``plugins``, ``data``, ``synth``, ``report`` and ``convert`` jobs.

Only running a matrix imports TensorFlow (when its first run starts); ``--help``, listing plugins,
a dry run, describing data and rendering a report stay fast.
"""

from __future__ import annotations

import argparse
import errno
import itertools
import json
import os
import re
import sys
import textwrap
from pathlib import Path
from contextlib import nullcontext, redirect_stdout
from typing import Sequence

from rich.console import Console, Group
from rich.markup import escape
from rich.measure import Measurement
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

import feph_finetune
from feph_finetune.invocation import continue_command, program, shell_quote
from feph_finetune.errors import EXIT_CLOSED_PIPE, EXIT_FAILED_RUNS, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, message_lines, print_error
from feph_finetune.printable import EscapingConsole, counted, printable, shortened
from feph_finetune.standard_streams import reopen_closed_standard_streams
from feph_finetune.stdout import OutputError, discard_stdout, stdout_failures_marked

RUN_DESCRIPTION = """\
Run an experiment matrix: every experiment of the TOML in its phases (a grouped 80/20 split, and
k-fold cross-validation), then print the paper's tables. Finished runs in the output directory are
skipped, so an interrupted matrix continues where it stopped.

commands (each has --help):
  plugins   list the installed plugins, the hooks they implement and their options
  data      describe a dataset of any format as the runner sees it (classes, drops, splits)
  synth     write a synthetic FePh-format dataset (the demo's and tests' data)
  report    print the tables of a results directory, write its figures and report.md
  predict   apply a trained model bundle to images, frame folders and videos
  export    copy a finished run's model bundle to a folder of its own
  convert   convert Savchenko's EfficientNet-B0/B2 (.pt, .onnx) to a Keras file
"""


def run_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m feph_finetune", description=RUN_DESCRIPTION, formatter_class=ParagraphsHelpFormatter,
        usage="%(prog)s EXPERIMENTS.toml [options]\n       %(prog)s COMMAND ...  (commands below)",
    )
    parser.add_argument("config", type=path_argument, nargs="?", metavar="EXPERIMENTS.toml", help="the experiment matrix")  # required: refused by missing_config, which says where it went
    parser.add_argument("--version", action="version", version=f"feph_finetune {feph_finetune.__version__}")
    parser.add_argument("--dry-run", action="store_true", help="validate and list the runs, run nothing")
    parser.add_argument("--json", action="store_true", help="with --dry-run: print the runs as JSON (refused without --dry-run)")
    parser.add_argument("--only", nargs="+", action="extend", metavar="NAME", help="run only these experiments (repeatable: --only A --only B is --only A B)")
    parser.add_argument("--phase", choices=("exploratory", "cv"), help="run only this phase")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a dotted TOML key, e.g. --set dataset.root=/data/FePh (repeatable)")
    parser.add_argument("--output", type=path_argument, metavar="DIR", help="results directory (default: the TOML's output, else runs/; runs/demo with --demo)")
    parser.add_argument("--force", action="store_true", help="rerun the selected runs, finished ones too; each old result.json is kept as result.previous.json (interrupted: continue without --force)")
    parser.add_argument("--executor", metavar="NAME", help="where runs execute: process (default: a fresh child process per run), inline (in this process), ray (a Ray cluster), or one a plugin registers; options in the TOML's [executor.NAME] table")
    parser.add_argument("--jobs", metavar="N|auto", help="process executor: runs at once (default 1; one per device with --devices; with --demo, one per CPU core within the free memory; auto: what the machine allows)")
    parser.add_argument("--devices", metavar="0,1,...", help="process executor: GPU indices; each child sees one through CUDA_VISIBLE_DEVICES")
    parser.add_argument("--track", action="append", default=[], metavar="NAME", help="also report every run to this tracking plugin (tensorboard, mlflow, or one a plugin adds; options in the TOML's [tracking.NAME] table; repeatable)")
    parser.add_argument("--demo", action="store_true", help="use synthetic FePh-format data and a base model pre-trained on synthetic faces, at the TOML's [demo] settings")
    return parser


def plugins_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m feph_finetune plugins", description="List every installed plugin: its name, where it comes from (builtin, or a distribution and its version), its status, the hooks it implements and its options with their defaults. A third-party plugin that cannot be used is listed with its problem: broken (import error, wrong hook), conflict (two distributions offer the name), refused (it would replace a built-in), filtered (FEPH_FINETUNE_LOAD_PLUGINS leaves its distribution out).")
    parser.add_argument("--json", action="store_true", help="print a JSON list of {name, origin, hooks, options, status, error} (with --settings: of {table, key, default, accepts, help})")
    parser.add_argument("--settings", action="store_true", help="list every setting a TOML may hold instead, from its declaration: the core's tables, [demo], each executor's and each plugin's options")
    return parser


def data_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m feph_finetune data", description="Describe a dataset of any format as the runner will see it: kept images per class, groups, dropped entries by reason, and the grouped hold-out and cross-validation splits.")
    parser.add_argument("root", type=path_argument, metavar="ROOT", help="the dataset folder")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    from feph_finetune.config.options import describe, integer
    from feph_finetune.config.schema import DATASET_OPTIONS, TOP_LEVEL_OPTIONS

    folds, seed, test_fraction, group_by = DATASET_OPTIONS["folds"], TOP_LEVEL_OPTIONS["seed"], DATASET_OPTIONS["test_fraction"], DATASET_OPTIONS["group_by"]
    parser.add_argument("--folds", type=integer, metavar="K", default=folds.default, help=f"cross-validation folds, as [dataset] folds: {describe(folds)} (default {folds.default})")
    parser.add_argument("--seed", type=integer, metavar="S", default=seed.default, help=f"split seed, as the TOML's seed: {describe(seed)} (default {seed.default})")
    parser.add_argument("--test-fraction", type=float, metavar="F", default=test_fraction.default, help=f"hold-out test share, as [dataset] test_fraction: {describe(test_fraction)} (default {test_fraction.default})")
    parser.add_argument("--group-by", metavar="KEY", default=group_by.default, help="keep these groups on one side of every split: a key the format offers (feph: sequence, signer)")
    parser.add_argument("--labels", metavar="CSV", help="labels CSV, relative to ROOT (default: the one CSV found)")
    parser.add_argument("--images", metavar="DIR", help="image folder, relative to ROOT (default: the one found)")
    parser.add_argument("--format", metavar="NAME", default=DATASET_OPTIONS["format"].default, help="the dataset format plugin: feph (default), folders, csv or a third party's")
    parser.add_argument("--set", action="append", default=[], metavar="dataset.KEY=VALUE", help="a [dataset] setting, as in a TOML (repeatable): dataset.group_pattern='^(.+)_f', dataset.classes=['a','b']")
    return parser


def synth_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m feph_finetune synth", description="Write a synthetic dataset in the FePh release's layout (labels CSV and RGBA PNGs with sequence-coded names, including bad rows of every kind). Generated, never downloaded.")
    parser.add_argument("out", type=path_argument, metavar="OUT", help="folder to write")
    from feph_finetune.config.flags import SYNTH_NUMBERS, add_flag

    add_flag(parser, "--images", SYNTH_NUMBERS, metavar="N")
    add_flag(parser, "--seed", SYNTH_NUMBERS, metavar="S")
    parser.add_argument("--domain", choices=("feph", "generic"), default="feph", help="feph: signers' upper bodies; generic: face close-ups for pre-training a base model")
    return parser


def report_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m feph_finetune report", description="Print the paper's tables (exploratory: Table 4; cross-validation: Table 5) for a results directory, with training times, fallback counts and comparisons against the No-FT baselines.")
    parser.add_argument("outdir", type=path_argument, metavar="OUTDIR", help="results directory of a matrix")
    parser.add_argument("--format", choices=("table", "markdown", "csv", "json"), default="table",
                        help="table: laid out for the console's width (default); markdown: GitHub tables; csv: one row per configuration; json: the summary rows")
    parser.add_argument("--paper", action="store_true", help="add the paper's published accuracy (Tables 4 and 5; std for cross-validation) beside the configurations whose label is the paper's")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--figures", type=path_argument, metavar="DIR", help='also write PNG figures (confusion matrices, cross-validation accuracy, sensitivity, learning curves) and report.md into DIR; needs matplotlib: pip install "feph_finetune[plots]"')
    only.add_argument("--confusion", metavar="NAME", help="print the confusion matrix of one configuration (experiment name or c/v label, e.g. M2) instead of the tables")
    return parser


def predict_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m feph_finetune predict",
        description="Apply a trained model to new frames, prepared exactly as in its training run (face crop, resize, normalisation with the run's fitted statistics). "
        "Prints a summary per input; --out writes one row per frame (input, file, frame, time_s, face_found, face_x/y/w/h, fallback, p_<class>..., predicted[, smooth_<class>..., smooth_predicted]).",
    )
    parser.add_argument("model", type=path_argument, metavar="MODEL", help="a model bundle: a run directory of a run with save_model = true, or a folder from `export`")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders of frames (natural order: fn9 before fn45), or videos (mp4, avi, webm...)")
    parser.add_argument("--out", type=path_argument, metavar="FILE", help="write one row per frame: FILE.csv (CSV with a header) or FILE.jsonl (JSON lines)")
    parser.add_argument("--plot", type=path_argument, metavar="FILE.png", help="draw the class probabilities over time of each video or folder (needs matplotlib)")
    from feph_finetune.config.flags import PREDICT_NUMBERS, add_flag

    add_flag(parser, "--every", PREDICT_NUMBERS, metavar="K")
    add_flag(parser, "--smooth", PREDICT_NUMBERS, metavar="N")
    add_flag(parser, "--batch-size", PREDICT_NUMBERS, metavar="B")
    return parser


def export_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m feph_finetune export", description="Copy the model bundle of a finished run (save_model = true) to a new folder: model.keras, bundle.json and, when a preprocessing step learned something from the training split (normalize's dataset_mean), state.npz.")
    parser.add_argument("run_dir", type=path_argument, metavar="RUN_DIR", help="the run's directory in the results directory")
    parser.add_argument("out", type=path_argument, metavar="OUT", help="a new (or empty) folder")
    return parser


CONVERT_DESCRIPTION = """\
Convert an EfficientNet-B0 or -B2 expression model to a Keras 3 file the efficientnet plugin
takes as weights: Savchenko's enet_b0_7.pt or enet_b2_8.pt (whole pickled timm models), a
state_dict of a timm EfficientNet, or an HSEmotion ONNX file (enet_b0_8_best_afew.onnx). The
variant is told from the file. The Keras model takes raw RGB 0-255 (x/255 and the ImageNet mean
and std are inside it; 224x224 for B0, 260x260 for B2) and outputs the source's softmax in the
source's class order, recorded in OUT.json next to it; multi-task files (8 classes, then valence
and arousal) keep the 8 classes only. Source and conversion are run on the same random images
first: nothing is written when their probabilities differ by more than 1e-4. A state_dict is
run as --architecture for that check. Needs pip install "feph_finetune[convert]" (ONNX) or
"feph_finetune[convert-torch]" (.pt).
"""


def convert_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m feph_finetune convert", description=CONVERT_DESCRIPTION, formatter_class=ParagraphsHelpFormatter)
    parser.add_argument("source", type=path_argument, metavar="SOURCE", help="a .onnx file, or a PyTorch .pt/.pth file (state_dict or whole model)")
    parser.add_argument("out", type=path_argument, metavar="OUT", help="OUT.keras (whole model) or OUT.weights.h5 (weights only)")
    parser.add_argument("--trust-pickle", action="store_true", help="allow a whole pickled model (enet_b0_7.pt): unpickling runs code named in the file, so only for files you trust")
    parser.add_argument("--classes", metavar="A,B,...", help="the source's class names in output order, comma-separated (default: HSEmotion's 7 or 8)")
    parser.add_argument("--architecture", metavar="TIMM_NAME", help="for a state_dict: the timm architecture it was trained as, run to verify the "
                        "conversion (default: tf_efficientnet_b0 or tf_efficientnet_b2, Savchenko's, from the file's shapes)")
    return parser


class ParagraphsHelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, whose description keeps its paragraphs (blank lines) and its indented
    lines (a list of ``name   words``, each its own line, wrapped under its words), each wrapped
    to the terminal's width: argparse's default joins all into one paragraph, its raw formatter
    wraps nothing."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "\n\n".join(self._fill_paragraph(paragraph, width, indent) for paragraph in text.strip("\n").split("\n\n"))

    @staticmethod
    def _fill_paragraph(paragraph: str, width: int, indent: str) -> str:
        lines = paragraph.splitlines()
        if not any(line[:1].isspace() for line in lines):
            return textwrap.fill(" ".join(paragraph.split()), width, initial_indent=indent, subsequent_indent=indent, break_on_hyphens=False)
        filled = []
        for line in lines:
            hanging = re.match(r"\s*\S+\s{2,}|\s*", line).end()  # under the words of "  name   words"
            filled.append(textwrap.fill(line, width, initial_indent=indent, subsequent_indent=indent + " " * hanging, break_on_hyphens=False))
        return "\n".join(filled)


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, whose error line starts "error:" as the project's other errors do, and
    shows the arguments' control characters escaped as every message does
    (:mod:`feph_finetune.printable`): argparse's own "unrecognized arguments: ..." writes them raw;
    and each argument it quotes :func:`shortened`, as every message quotes a user's value:
    argparse writes "invalid int value: '999...'" with all of a 5,000-digit value."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register("action", None, StoreOnce)  # every option that takes one value (in groups too)
        self.register("action", "store", StoreOnce)

    def parse_known_args(self, args=None, namespace=None):
        self.given: set[str] = set()  # the destinations of the StoreOnce options given so far
        return super().parse_known_args(args, namespace)

    def error(self, message: str):
        """Print ``error: MESSAGE`` as every error of the project starts (argparse writes
        "PROG: error: MESSAGE"), then the usage, and exit 2."""
        print_error(EscapingConsole(stderr=True), printable(_ARGPARSE_WORD.sub(_shortened_word, message)))
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE)


class StoreOnce(argparse._StoreAction):
    """argparse's store action for an option that takes one value, refused when given twice
    ("error: --phase given twice (cv, then exploratory); give it once"): argparse keeps the last
    silently, so ``--phase cv --phase exploratory`` would run one phase where a reader expects
    both or neither. Options that take several values accumulate instead (``--only A --only B``
    is ``--only A B``; ``--set`` and ``--track`` repeat)."""

    def __call__(self, parser, namespace, values, option_string=None):
        given = getattr(parser, "given", set())
        if option_string and self.dest in given:
            parser.error(f"{option_string} given twice ({shortened(str(getattr(namespace, self.dest)))}, then {shortened(str(values))}); give it once")
        given.add(self.dest)
        super().__call__(parser, namespace, values, option_string)


def path_argument(text: str) -> Path:
    """The argparse type of every path a command takes (positional or option): ``Path(text)``,
    but an empty text is refused (exit 2, argparse naming the argument), as everywhere a path is
    given (:data:`~feph_finetune.data.user_files.EMPTY_PATH`)."""
    from feph_finetune.data.user_files import empty_path_problem

    if problem := empty_path_problem(text):
        raise argparse.ArgumentTypeError(problem)
    return Path(text)


#: What argparse's messages quote of the arguments: a value as ``repr`` writes it (``'x'``), or
#: a word (an unrecognized argument, an option given with ``=``).
_ARGPARSE_WORD = re.compile(r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|\S+""")


def _shortened_word(found: re.Match) -> str:
    word = found[0]
    quoted = len(word) > 1 and word[0] == word[-1] and word[0] in "'\""
    return f"{word[0]}{shortened(word[1:-1])}{word[-1]}" if quoted else shortened(word)


# --- commands ------------------------------------------------------------------------------------


def load_plugins():
    """The plugin registry, after printing its warnings (unusable plugins, unknown names, executors
    left out, what a plugin's import changed and was changed back) on stderr: every command
    that uses plugins gets them here (the matrix: :meth:`feph_finetune.session.Session.load_plugins`),
    so that none restores a plugin's changes without a word."""
    from feph_finetune.execution.executors import executor_warnings
    from feph_finetune.plugins import get_plugins

    plugins = get_plugins()
    for warning in [*plugins.warnings, *executor_warnings(plugins)]:
        warn(warning)
    return plugins


def warn(line: str) -> None:
    """One warning on stderr (a skipped result file, ...): wrapped at the width of a terminal
    (or of ``COLUMNS``), on one line in a log file or pipe, as :func:`output_console` does."""
    errors = EscapingConsole(stderr=True)
    unwrapped = not errors.is_terminal and "COLUMNS" not in os.environ
    errors.print(f"[yellow]warning:[/yellow] {escape(line)}", markup=True, highlight=False, soft_wrap=unwrapped)


def plugin_prints_aside(machine_readable: bool):
    """Within the block, what plugin code print()s goes to stderr when the command's stdout is
    machine-readable (``--json``), so that it still parses; a context manager."""
    return redirect_stdout(sys.stderr) if machine_readable else nullcontext()


def cmd_plugins(args, console: Console) -> int:
    if args.settings:
        return print_settings(load_plugins(), args.json, console)
    with plugin_prints_aside(args.json):
        infos = load_plugins().info()
    if args.json:
        print(json.dumps([info.as_dict() for info in infos], indent=2, default=str))
        return EXIT_OK
    print_plugins(infos, console)
    return EXIT_OK


_PLUGINS_TITLE = "feph_finetune plugins"
_PLUGINS_CAPTION = "options with their defaults; set them in [defaults.options.PLUGIN] or [experiments.NAME.options.PLUGIN]"
_PLUGINS_HEADERS = ["name", "origin", "status", "hooks and options, or the problem"]


def print_plugins(infos, console: Console) -> None:
    """The plugins as a table whose every word is whole (:func:`~feph_finetune.results.reports.words_whole`),
    or, where no such table fits the console (a long plugin, origin or option word, 40 columns),
    as a list, one plugin under another, as ``plugins --settings`` does: no cell is ever cut."""
    from rich import box

    from feph_finetune.results.reports import words_whole

    rows = [_plugin_cells(info) for info in infos]
    widths = words_whole([[header, *(row[index] for row in rows)] for index, header in enumerate(_PLUGINS_HEADERS)], console.width)
    if widths is None:
        console.print(_plugins_list(rows, console.width))
        return
    table = Table(title=_PLUGINS_TITLE, caption=_PLUGINS_CAPTION, box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, collapse_padding=True)
    for header, width in zip(_PLUGINS_HEADERS, widths):
        table.add_column(header, width=width)
    for name, origin, status, detail in rows:
        table.add_row(name, origin, _status_text(status), detail)
    console.print(table)


def _plugin_cells(info) -> list[str]:
    """One plugin's name, origin, status, and its hooks and options (each ``key=default`` one
    word) or its problem."""
    if info.status != "ok":
        return [info.name, info.origin, info.status, info.error]
    options = ", ".join(f"{key}={json.dumps(value, default=str)}" for key, value in info.options.items())
    return [info.name, info.origin, info.status, ", ".join(info.hooks) + (f"\noptions: {options}" if options else "")]


def _status_text(status: str) -> Text:
    return Text(status, style=None if status == "ok" else "red")


def _plugins_list(rows: list[list[str]], width: int) -> Group:
    """The plugins one under another: name, status and origin on a line, the hooks and options
    (or the problem) indented below; a word wider than the console breaks at a ``.``/``=``/``_``
    where it can (:func:`~feph_finetune.results.reports.fold_long_words`)."""
    from feph_finetune.results.reports import fold_long_words

    lines: list = [Text(_PLUGINS_TITLE, style="bold")]
    for name, origin, status, detail in rows:
        lines.append(Text.assemble("\n", (fold_long_words(name, width), "bold"), "  ", _status_text(fold_long_words(status, width)), "  ", fold_long_words(origin, width)))
        lines.append(Padding(Text(fold_long_words(detail, width - 2)), (0, 0, 0, 2), expand=False))
    lines.append(Text("\n" + _PLUGINS_CAPTION, style="dim"))
    return Group(*lines)


def print_settings(plugins, as_json: bool, console: Console) -> int:
    """Every declared setting, one row each (:func:`feph_finetune.config.schema.setting_rows`)."""
    from feph_finetune.config.schema import CORE_TABLES, TRACKING_HOOKS, setting_rows
    from feph_finetune.demo.protocol import DEMO_OPTIONS
    from feph_finetune.execution.executors import NAME_OPTION, executor_classes

    tables = {**CORE_TABLES, "demo": DEMO_OPTIONS, "executor": {"name": NAME_OPTION}}
    with plugin_prints_aside(as_json):
        tables.update({f"executor.{name}": cls.declarations() for name, cls in executor_classes(plugins).items()})
        for name in sorted(info.name for info in plugins.info() if info.status == "ok"):
            if plugins.implements(name, "load_dataset"):
                place = f"dataset (format = {name!r})"
            else:
                place = f"{'tracking' if any(plugins.implements(name, hook) for hook in TRACKING_HOOKS) else 'options'}.{name}"
            tables[place] = plugins.option_declarations(name)
    rows = setting_rows(tables)
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return EXIT_OK
    table = Table(title=_SETTINGS_TITLE, caption=_SETTINGS_CAPTION)
    for column in ("table", "key", "default", "accepts", "help"):
        table.add_column(column, overflow="fold", ratio=1 if column in ("accepts", "help") else None)
    for row in rows:
        table.add_row(_setting_place(row), row["key"], _setting_default(row), row["accepts"], row["help"])
    unbounded = console.options.update_width(sys.maxsize)  # Measurement clamps to the width it is given
    fits = Measurement.get(console, unbounded, table).minimum <= console.width  # every word whole
    console.print(table if fits else _settings_list(rows))
    return EXIT_OK


_SETTINGS_TITLE = "feph_finetune settings"
_SETTINGS_CAPTION = "options.PLUGIN: in [defaults.options.PLUGIN] or [experiments.NAME.options.PLUGIN]; tracking.PLUGIN: in [tracking.PLUGIN]"


def _setting_place(row: dict) -> str:
    return f"[{row['table']}]" if row["table"] else "(top level)"


def _setting_default(row: dict) -> str:
    return json.dumps(row["default"], default=str)


def _settings_list(rows: list[dict]) -> Group:
    """The settings as a list under one heading per TOML table, for a console too narrow for the
    table without cutting words (80 columns): ``key = default  accepts`` and the help below it,
    both wrapped at spaces."""
    lines: list = [Text(_SETTINGS_TITLE, style="bold")]
    for place, group in itertools.groupby(rows, key=_setting_place):
        lines.append(Text("\n" + place, style="bold"))
        for row in group:
            lines.append(Padding(Text.assemble((row["key"], "bold"), " = ", _setting_default(row), "  ", (row["accepts"], "dim")), (0, 0, 0, 2), expand=False))
            lines.append(Padding(Text(row["help"]), (0, 0, 0, 6), expand=False))
    lines.append(Text("\n" + _SETTINGS_CAPTION, style="dim"))
    return Group(*lines)


def cmd_data(args, console: Console) -> int:
    from feph_finetune.api import DatasetError
    from feph_finetune.config.flags import DATA_NUMBERS, flag_problems_of
    from feph_finetune.config.reading import ConfigError, Problem
    from feph_finetune.data.datasets import FEPH_DOWNLOAD, load_dataset, single_class_problem
    from feph_finetune.data.describe import DATA_FLAGS, dataset_settings, describe_dataset, render_description
    from feph_finetune.data.user_files import input_folder_problem

    load_plugins()  # the data formats are plugins: say what loading them did
    problems = flag_problems_of(args, DATA_NUMBERS)
    if args.root.is_file():
        problems.append(Problem(f"ROOT {args.root}", f"is a file, not a folder: give the dataset folder that holds it ({args.root.parent})"))
    elif what := input_folder_problem(args.root):
        problems.append(Problem(f"ROOT {args.root}", f"{what}. {FEPH_DOWNLOAD}, then give its folder as ROOT; or describe synthetic data: python -m feph_finetune synth data/synthetic"))
    flags = {"root": str(args.root), "format": args.format, "labels": args.labels or "", "images": args.images or "", "group_by": args.group_by,
             "folds": args.folds, "test_fraction": args.test_fraction}
    settings = dataset_settings(flags, args.set, problems, given={"root", *(set(DATA_FLAGS) & args.given)})
    if problems:
        raise ConfigError(problems)
    dataset = load_dataset(settings, spell=lambda key: DATA_FLAGS.get(key, f"--set dataset.{key}=..."))
    try:
        description = describe_dataset(dataset, folds=settings["folds"], seed=args.seed, test_fraction=settings["test_fraction"], group_by=settings["group_by"],
                                       group_pattern=settings["group_pattern"])
    except ValueError as error:  # e.g. fewer groups than folds, a group key the data lacks
        raise DatasetError(f"{args.root}: cannot split: {error}") from error
    if args.json:
        print(json.dumps(description, indent=2))
    else:
        render_description(description, console)
    if not dataset.samples:
        dropped = ", ".join(f"{count} {reason}" for reason, count in description["dropped"].items() if count) or "none"
        raise DatasetError(f"{args.root}: no usable image: no entry of the data becomes a sample (dropped: {dropped})")
    if problem := single_class_problem(dataset, settings):
        raise DatasetError(problem)
    return EXIT_OK


def cmd_synth(args, console: Console) -> int:
    from feph_finetune.config.flags import SYNTH_NUMBERS, flag_problems_of
    from feph_finetune.config.reading import ConfigError, Problem
    from feph_finetune.results.store import output_folder_problem, writing_to
    from feph_finetune.demo.synth import write_synthetic_dataset

    problems = flag_problems_of(args, SYNTH_NUMBERS)
    problem = output_folder_problem(args.out)
    if problem:
        problems.append(Problem(str(args.out), problem))
    if problems:
        raise ConfigError(problems)
    try:
        with writing_to(args.out):
            summary = write_synthetic_dataset(args.out, images=args.images, seed=args.seed, domain=args.domain)
    except FileExistsError as error:  # a dataset is already there: refused before anything is written
        raise ConfigError([Problem(str(args.out), str(error).removeprefix("write_synthetic_dataset: ").removeprefix(f"{args.out} "))]) from error
    console.print(f"wrote {counted(summary.get('kept', args.images), 'image')} ({args.domain}) to {args.out}", markup=False)
    return EXIT_OK


def cmd_report(args, console: Console) -> int:
    from feph_finetune.config.reading import ConfigError, Problem
    from feph_finetune.results.reports import configuration_warnings, render
    from feph_finetune.results.store import RESULT_FILE, RunStore
    from feph_finetune.data.user_files import NO_SUCH_FOLDER, input_folder_problem

    if args.figures is not None:
        from feph_finetune.results.figures import PLOTS_INSTALL, plots_available
        from feph_finetune.results.store import output_folder_problem

        if not plots_available():
            raise ConfigError([Problem(f"--figures {args.figures}", f"figures need matplotlib, which is not installed: {PLOTS_INSTALL}")])
        problem = output_folder_problem(args.figures)
        if problem:
            raise ConfigError([Problem(f"--figures {args.figures}", problem)])
    if problem := input_folder_problem(args.outdir):
        raise ConfigError([Problem(f"OUTDIR {args.outdir}", "no such results directory" if problem == NO_SUCH_FOLDER else problem)])
    store = RunStore(args.outdir, warn=warn)
    records = one_run_each(store)
    if not records and (args.outdir / RESULT_FILE).is_file():
        raise ConfigError([Problem(f"OUTDIR {args.outdir}", f"one run's folder (it holds {RESULT_FILE}); give the results directory that holds it: "
                                                             f"{program()} report {shell_quote(str(args.outdir.parent))}")])
    if not records:
        raise ConfigError([Problem(f"OUTDIR {args.outdir}", "no finished runs (no usable */result.json)")])
    for line in configuration_warnings(records, lambda run_id: str(store.run_dir(run_id) / RESULT_FILE)):
        warn(line)
    if args.confusion is not None:
        return print_confusion(records, args.confusion, console)
    render(records, args.format, console, paper=args.paper)
    if args.figures is not None:
        from feph_finetune.session import write_figures

        write_figures(records, args.outdir, args.figures, args.paper, console, warn)
    return EXIT_OK


def one_run_each(store) -> list[dict]:
    """The store's records, one per run under today's ids: a run recorded under an earlier id
    and again under today's counts once (:func:`feph_finetune.results.earlier_ids.one_record_per_run`);
    each with the configuration it was made under (:func:`feph_finetune.results.run_configurations.with_configurations`),
    so that a report row averages one configuration's runs only. Each run's ``config.json`` and
    ``environment.json`` are read once for both; a value in them that no run writes is warned about
    (:func:`~feph_finetune.results.run_configurations.written_value_problems`)."""
    from functools import lru_cache

    from feph_finetune.config.matrix import recorded_id_rules
    from feph_finetune.config.reading import config_from_dict
    from feph_finetune.results.earlier_ids import one_record_per_run, run_files
    from feph_finetune.results.run_configurations import with_configurations

    plugins = load_plugins()
    identify, read = recorded_id_rules(config_from_dict({}), plugins), lru_cache(maxsize=None)(run_files)
    return with_configurations(store, one_record_per_run(store, store.records(), identify, warn, read), identify, read, warn,
                               lru_cache(maxsize=None)(plugins.option_declarations))


def print_confusion(records: list[dict], name: str, console: Console) -> int:
    from feph_finetune.results import confusion
    from feph_finetune.config.reading import ConfigError, Problem, close_match
    from feph_finetune.results.reports import configurations

    everything = configurations(records)
    chosen = confusion.matching(everything, name)
    if not chosen:
        known = confusion.known_names(everything)
        raise ConfigError([Problem(f"--confusion {name}", f"no configuration {name!r}{close_match(name, known)}; configurations: {', '.join(known)}")])
    confusion.print_confusion(chosen, console)
    return EXIT_OK


def cmd_predict(args, console: Console) -> int:
    from feph_finetune.predict.command import predict_command

    return predict_command(args, console, EscapingConsole(stderr=True))


def cmd_export(args, console: Console) -> int:
    from feph_finetune.predict.bundle import BundleError, export_bundle
    from feph_finetune.results.store import writing_to

    try:
        with writing_to(args.out):
            out = export_bundle(args.run_dir, args.out)
    except BundleError as error:
        return print_error(EscapingConsole(stderr=True), error.problems)
    files = ", ".join(sorted(path.name for path in out.iterdir()))
    console.print(f"exported the model bundle of {args.run_dir} to {out}/ ({files})", markup=False, highlight=False)
    return EXIT_OK


def cmd_convert(args, console: Console) -> int:
    from feph_finetune.convert import ConversionError, convert
    from feph_finetune.results.store import writing_to

    classes = [name for name in args.classes.split(",")] if args.classes else None
    try:
        with writing_to(args.out):
            convert(args.source, args.out, trust_pickle=args.trust_pickle, classes=classes, architecture=args.architecture,
                report=lambda line: console.print(line, markup=False, highlight=False))
    except ConversionError as error:  # one problem a line
        return print_error(EscapingConsole(stderr=True), message_lines(error))
    return EXIT_OK


def print_runs(runs, as_json: bool, console: Console) -> None:
    """The runs of a dry run, laid out for the console's width (80 columns and up).

    The id already names the experiment, the phase (``x``: the exploratory split, ``cvK``: fold
    K) and the configuration's hash, so it stands alone and never wraps (unless a long
    experiment name leaves the rest less than :data:`_RUN_DETAILS_MIN` cells: then it folds after
    a ``_`` or ``-``), nor do the model and
    optimizer; the plugins that prepare the data (preprocess, +augment, weights=class weights)
    share one column that wraps between names, never inside one; a grid variant's ``key=value``
    pairs wrap between pairs and fold only a pair longer than the room left, after a ``.`` or
    ``=`` where it can (:func:`~feph_finetune.results.reports.fold_long_words`). Widths are
    display cells.
    """
    if as_json:
        print(json.dumps([run.describe() for run in runs], indent=2))
        return
    from rich import box
    from rich.cells import cell_len

    from feph_finetune.results.reports import fold_long_words

    rows = []
    for run in runs:
        info = run.describe()
        steps = [*info["preprocess"], *(f"+{name}" for name in info["augment"]), *([f"weights={info['class_weights']}"] if info["class_weights"] else [])]
        rows.append([run.id, info["model"], info["optimizer"] or "No-FT", ", ".join(steps), " ".join(f"{key}={value}" for key, value in run.variant.items())])
    headers = ["run id", "model", "optimizer", "data steps", "variant"]
    if not any(row[4] for row in rows):
        headers, rows = headers[:4], [row[:4] for row in rows]
    widths = _run_column_widths(headers, rows, console.width)
    if sum(widths) + 2 * (len(widths) - 1) > console.width:  # long ids: the rest in one column beside them
        headers, rows = ["run id", "model, optimizer; data steps; variant"], [[row[0], "; ".join(filter(None, [f"{row[1]}, {row[2]}", *row[3:]]))] for row in rows]
        longest_id = max(cell_len(row[0]) for row in rows)
        widths = [min(longest_id, max(console.width - 2 - _RUN_DETAILS_MIN, console.width // 2)), 0]
        widths[1] = console.width - widths[0] - 2
    table = Table(
        title=counted(len(runs), "run"), box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, collapse_padding=True,
    )
    longest = [max(cell_len(text) for text in [header, *(row[index] for row in rows)]) for index, header in enumerate(headers)]
    wraps = [longest[index] > widths[index] or not (index == 0 or (index < 3 and len(headers) > 2)) for index in range(len(headers))]
    for header, width, wrap in zip(headers, widths, wraps):
        table.add_column(header, width=width, no_wrap=not wrap, overflow="fold")
    for row in rows:
        table.add_row(*(fold_long_words(cell, width) if wrap else cell for cell, width, wrap in zip(row, widths, wraps)))
    console.print(table)
    for entry in RUN_TABLE_LEGEND:
        for line in phrase_lines(entry, console.width):
            console.print(line, style="table.caption", highlight=False, markup=False)


#: The least width the run table's details column gets beside run ids too long for the console
#: (a longer id then folds after a ``_`` or ``-``).
_RUN_DETAILS_MIN = 24


#: What the run table's columns hold, an entry per column, each phrase by phrase: the legend is
#: left-aligned at the console's width, an entry starts a line, a line breaks only between phrases.
RUN_TABLE_LEGEND = (("run id: experiment,", "x (exploratory split)", "or cvK (fold K),", "hash of configuration and data"),
                    ("data steps: preprocess plugins,", "+augment,", "weights=class weights plugin"))


def phrase_lines(phrases: Sequence[str], width: int) -> list[str]:
    """``phrases`` joined by spaces into lines of at most ``width`` display cells, left-aligned,
    broken only between phrases (a phrase wider than ``width`` has a line of its own, which the
    console wraps)."""
    from rich.cells import cell_len

    lines: list[str] = []
    for phrase in phrases:
        if lines and cell_len(lines[-1]) + 1 + cell_len(phrase) <= width:
            lines[-1] += " " + phrase
        else:
            lines.append(phrase)
    return lines


def _run_column_widths(headers: list[str], rows: list[list[str]], width: int) -> list[int]:
    """Widths of :func:`print_runs`' columns: the first three as wide as their longest cell, the
    wrapping ones what is left, each at least its longest word (``key=value`` pair for the
    variant) while the room allows. Columns are separated by 2 cells; widths are display cells."""
    from rich.cells import cell_len

    natural = [max(cell_len(text) for text in [header, *(row[index] for row in rows)]) for index, header in enumerate(headers)]
    longest_word = [max(cell_len(word) for text in [header, *(row[index] for row in rows)] for word in text.split()) for index, header in enumerate(headers)]
    room = width - sum(natural[:3]) - 2 * (len(headers) - 1)
    if len(headers) == 4:
        return [*natural[:3], max(longest_word[3], min(natural[3], room))]
    variant_min = min(longest_word[4], max(10, room - longest_word[3]))
    steps = max(longest_word[3], min(natural[3], room - variant_min))
    return [*natural[:3], steps, min(natural[4], max(variant_min, room - steps))]


def cmd_run(args, console: Console) -> int:
    """Run the matrix through a :class:`feph_finetune.session.Session` (the demo's with ``--demo``)."""
    from feph_finetune.config.reading import COMMAND_LINE
    from feph_finetune.demo.protocol import DEMO_OPTIONS
    from feph_finetune.execution.continuation import FINISHED_RUNS

    if args.demo:
        from feph_finetune.demo.session import DemoSession as Session
    else:
        from feph_finetune.session import Session

    session = Session(
        args.config, only=args.only, phase=args.phase, overrides=args.overrides, executor=args.executor, jobs=args.jobs,
        devices=args.devices, force=args.force, output=args.output, track=args.track, tables={"demo": DEMO_OPTIONS},
        console=console, warn=warn, argument_names=COMMAND_LINE,
    )
    FINISHED_RUNS.set(session.finished_runs)  # what the command says is saved if it stops early; reset by main
    with plugin_prints_aside(args.dry_run and args.json):
        runs = session.plan()  # every check: an interrupt until here has no runs to continue
    if args.dry_run:
        print_runs(runs, args.json, console)
        if not args.json and (earlier := session.earlier_runs()):
            from feph_finetune.results.earlier_ids import WHY

            moves = ", ".join(f"{name} -> {run_id}" for run_id, name in earlier.items())
            console.print(f"{len(earlier)} of these runs {'is' if len(earlier) == 1 else 'are'} finished under an earlier id and would be carried over, not run again ({WHY}): {moves}", markup=False, highlight=False)  # a list of run ids: wrapped between ids, never inside one
        return EXIT_OK
    try:
        result = session.run()
    except KeyboardInterrupt as stop:
        raise RunsInterrupted from stop
    if result.failed:
        console.print(f"[red]{len(result.failed)} of {len(result.runs)} runs failed:[/red] {escape(', '.join(result.failed))} (details in each run's result.json)", markup=True)
        return EXIT_FAILED_RUNS
    console.print(f"results in {result.output}/", markup=False)
    return EXIT_OK


class RunsInterrupted(KeyboardInterrupt):
    """The matrix was interrupted once its runs were under way: the command's last line says how
    to continue, and that finished runs are saved where a selected run has finished
    (:func:`~feph_finetune.execution.continuation.continue_line`; an interrupt before, in the checks, or of
    another command, says "interrupted" and what it was doing, if it knows)."""


COMMANDS = {
    "plugins": (plugins_parser, cmd_plugins),
    "data": (data_parser, cmd_data),
    "synth": (synth_parser, cmd_synth),
    "report": (report_parser, cmd_report),
    "predict": (predict_parser, cmd_predict),
    "export": (export_parser, cmd_export),
    "convert": (convert_parser, cmd_convert),
}


def output_console() -> Console:
    """The console of a command's output (tables, progress and log lines).

    ``log_path=False``: a ``Console.log`` line (the demo's) shows the time and the message, not
    the source file and line that called it, which took a column of every log line and wrapped
    the messages at 80 columns.
    """
    console = OutputConsole(log_path=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # A log file or a pipe: the tables fit any width from 80 up, but log lines (run ids,
        # failures) read better unwrapped. COLUMNS=80 gives a pipe a terminal's width.
        console = OutputConsole(width=160, log_path=False)
    return console


class OutputConsole(EscapingConsole):
    """A console whose closed pipe reaches :func:`main` as :exc:`BrokenPipeError` (rich's own
    exits with 1, which here means "some runs failed")."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError(errno.EPIPE, "the output pipe was closed")


def main(argv: list[str] | None = None) -> int:
    """The command line; a closed output pipe (``plugins --json | head``) ends it quietly.

    Python's documentation ("Note on SIGPIPE", :mod:`signal`) recommends this: catch
    :exc:`BrokenPipeError` and point stdout at devnull so that the interpreter's final flush
    cannot raise again; the exit code is :data:`EXIT_CLOSED_PIPE`, as if SIGPIPE had ended it.
    A process started with stdout closed (``>&-``) runs as with ``> /dev/null``
    (:mod:`feph_finetune.standard_streams`): the entry point did it before any file was opened;
    here again for a program that calls this function without stdout (``sys.stdout`` None).
    """
    from feph_finetune.unraisable import unraisable_as_warnings

    reopen_closed_standard_streams()

    try:
        with unraisable_as_warnings():  # a plugin object's __del__ that raises: one line, no traceback
            return _command_line(argv)  # :func:`guarded` flushes stdout: a pipe closed while the last buffer waits
    except BrokenPipeError:
        discard_stdout()
        return EXIT_CLOSED_PIPE


def _command_line(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    console = output_console()
    errors = EscapingConsole(stderr=True)
    if argv and argv[0] in COMMANDS:
        make_parser, command = COMMANDS[argv[0]]
        parser = make_parser()
        args = parser.parse_args(argv[1:])
        args.given = frozenset(parser.given)  # the options given, for a --set that sets the same setting (data)
    else:
        parser = run_parser()
        args, command = parser.parse_args(argv), cmd_run
        if args.config is None:
            parser.error(missing_config(args.only))
        if args.json and not args.dry_run:
            parser.error("--json applies to --dry-run only (the runs as JSON); for the results as JSON use: python -m feph_finetune report OUTDIR --format json")
    return guarded(command, args, console, errors, argv)


def missing_config(only: list[str] | None) -> str:
    """Why the run command has no EXPERIMENTS.toml: ``--only`` takes every word after it, so
    ``--only A exp.toml`` took the file for an experiment name; argparse would only say that the
    file is required."""
    taken = [name for name in only or () if name.lower().endswith(".toml")]
    if taken:
        return f"--only took {taken[0]!r} as an experiment name, and no EXPERIMENTS.toml is left; put EXPERIMENTS.toml before --only, which takes every word after it"
    return "the following arguments are required: EXPERIMENTS.toml" + (" (put it before --only, which takes every word after it)" if only else "")


def guarded(command, args, console: Console, errors: Console, argv: list[str] = ()) -> int:
    """Turn the expected failures into one-screen messages and exit code 2.

    A :class:`PluginCallError` that reaches here came from a plugin called outside a run (a run's
    own failures are recorded in its result.json): the message names the plugin and hook. A
    terminal that hangs up while the command (or its last message) writes on it is the stop
    (:mod:`feph_finetune.hangup`).
    """
    from feph_finetune.hangup import hang_ups_answered

    with hang_ups_answered():
        return _guarded(command, args, console, errors, argv)


def _guarded(command, args, console: Console, errors: Console, argv: list[str]) -> int:
    from feph_finetune.config.reading import ConfigError
    from feph_finetune.api import DatasetError
    from feph_finetune.demo.protocol import PretrainingFailed
    from feph_finetune.execution.executors import ExecutorError, ExecutorLost
    from feph_finetune.results.store import WRITING_ERRNOS, WriteRefused, write_error
    from feph_finetune.plugins import PluginCallError, PluginLoadError
    from feph_finetune.results.reports import RecordError
    from feph_finetune.results.output_lock import LockFileError, OutputBusyError

    from feph_finetune.execution.continuation import FINISHED_RUNS, continue_line, runs_saved
    from feph_finetune.execution.executors import CONTINUE_COMMAND
    from feph_finetune.interrupts import stop_signals_as_interrupt

    continuing = CONTINUE_COMMAND.set(continue_command(argv))  # said by a matrix that must end at once (a run that does not stop)
    finishing = FINISHED_RUNS.set(FINISHED_RUNS.get())  # undone at the end: a later command in this process asks its own session
    try:
        with stop_signals_as_interrupt(), stdout_failures_marked():  # SIGTERM, SIGHUP, every command: exit 130, its temporary files removed
            code = command(args, console)
            sys.stdout.flush()  # a full disk takes print()'s buffered text only here
            return code
    except OutputError as error:  # stdout on a full disk (``> /dev/full``) or closed meanwhile
        discard_stdout()
        return print_error(errors, str(error))
    except (ConfigError, DatasetError, PluginLoadError, PluginCallError, RecordError) as error:
        return print_error(errors, message_lines(error))
    except (ExecutorError, OutputBusyError, LockFileError) as error:
        code = print_error(errors, message_lines(error))
        if isinstance(error, ExecutorLost) and command is cmd_run:  # lost midway: finished runs are kept
            errors.print(continue_line(continue_command(argv), runs_saved()), highlight=False, soft_wrap=True)
        return code
    except OSError as error:  # a full, read-only or forbidden disk: stop, keep what finished
        if error.errno == errno.ENAMETOOLONG and error.filename:  # a path given (or made from one) past the file system's limit
            from feph_finetune.data.user_files import lookup_problem

            return print_error(errors, [f"{error.filename}: {lookup_problem(error.filename) or error.strerror}"])
        if error.filename and error.errno in WRITING_ERRNOS:  # errors of writing only (EACCES may be a read)
            error = write_error(error, Path(error.filename))
        if not isinstance(error, WriteRefused):
            raise
        print_error(errors, message_lines(error))
        if command is cmd_run:
            errors.print(continue_line(continue_command(argv), runs_saved(), error.remedy), highlight=False, soft_wrap=True)
        return EXIT_USAGE
    except PretrainingFailed as error:
        print_error(errors, message_lines(error))
        errors.print(continue_line(continue_command(argv), runs_saved()), highlight=False, soft_wrap=True)
        return EXIT_FAILED_RUNS
    except RunsInterrupted:
        errors.print(continue_line(continue_command(argv), runs_saved(), interrupted=True), highlight=False, soft_wrap=True)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt as stop:  # before any run: nothing to continue
        errors.print(" ".join(("interrupted", *map(str, stop.args))), markup=False, highlight=False, soft_wrap=True)
        return EXIT_INTERRUPTED
    finally:
        FINISHED_RUNS.reset(finishing)
        CONTINUE_COMMAND.reset(continuing)

"""The command line: run a matrix, and the ``plugins``, ``data``, ``synth``, ``report`` and ``convert`` jobs.

Only running a matrix imports TensorFlow (when its first run starts); ``--help``, listing plugins,
a dry run, describing data and rendering a report stay fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

import feph_finetune

EXIT_OK, EXIT_FAILED_RUNS, EXIT_USAGE = 0, 1, 2

RUN_DESCRIPTION = """\
Run an experiment matrix: every experiment of the TOML in its phases (a grouped 80/20 split, and
k-fold cross-validation), then print the paper's tables. Finished runs in the output directory are
skipped, so an interrupted matrix continues where it stopped.

other commands (each has --help):
  plugins   list the installed plugins and the hooks they implement
  data      describe a FePh-format dataset as the runner sees it (classes, drops, splits)
  synth     write a synthetic FePh-format dataset (the demo's and tests' data)
  report    print the tables of a results directory
  convert   convert Savchenko's EfficientNet-B0 (.pt, .onnx) to a Keras file
"""


def run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m feph_finetune", description=RUN_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="%(prog)s EXPERIMENTS.toml [options]\n       %(prog)s {plugins,data,synth,report,convert} ...",
    )
    parser.add_argument("config", type=Path, metavar="EXPERIMENTS.toml", help="the experiment matrix")
    parser.add_argument("--version", action="version", version=f"feph_finetune {feph_finetune.__version__}")
    parser.add_argument("--dry-run", action="store_true", help="validate and list the runs, run nothing")
    parser.add_argument("--json", action="store_true", help="with --dry-run: print the runs as JSON")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these experiments")
    parser.add_argument("--phase", choices=("exploratory", "cv"), help="run only this phase")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a dotted TOML key, e.g. --set dataset.root=/data/FePh (repeatable)")
    parser.add_argument("--output", type=Path, help="results directory (default: the TOML's output, else runs/; runs/demo with --demo)")
    parser.add_argument("--force", action="store_true", help="rerun runs that already finished")
    parser.add_argument("--demo", action="store_true", help="use synthetic FePh-format data and a base model pre-trained on synthetic faces, at the TOML's [demo] settings")
    return parser


def plugins_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m feph_finetune plugins", description="List every installed plugin: its name, where it comes from (builtin, or a distribution and its version) and the hooks it implements.")
    parser.add_argument("--json", action="store_true", help="print a JSON list of {name, origin, hooks}")
    return parser


def data_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m feph_finetune data", description="Describe a FePh-format dataset as the runner will see it: kept images per class, sequences, dropped rows by reason, and the grouped hold-out and cross-validation splits.")
    parser.add_argument("root", type=Path, help="the dataset folder (labels CSV and image folder)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    parser.add_argument("--seed", type=int, default=1234, help="split seed (default 1234, as experiments.toml)")
    parser.add_argument("--test-fraction", type=float, default=0.2, help="hold-out test share (default 0.2)")
    parser.add_argument("--group-by", choices=("sequence", "signer"), default="sequence", help="keep these groups on one side of every split")
    parser.add_argument("--labels", help="labels CSV, relative to ROOT (default: the one CSV found)")
    parser.add_argument("--images", help="image folder, relative to ROOT (default: the one found)")
    return parser


def synth_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m feph_finetune synth", description="Write a synthetic dataset in the FePh release's layout (labels CSV and RGBA PNGs with sequence-coded names, including bad rows of every kind). Generated, never downloaded.")
    parser.add_argument("out", type=Path, help="folder to write")
    parser.add_argument("--images", type=int, default=300, help="number of valid images (default 300)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--domain", choices=("feph", "generic"), default="feph", help="feph: signers' upper bodies; generic: face close-ups for pre-training a base model")
    return parser


def report_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m feph_finetune report", description="Print the paper's tables (exploratory: Table 4; cross-validation: Table 5) for a results directory, with training times, fallback counts and comparisons against the No-FT baselines.")
    parser.add_argument("outdir", type=Path, help="results directory of a matrix")
    parser.add_argument("--format", choices=("table", "markdown", "csv", "json"), default="table")
    return parser


CONVERT_DESCRIPTION = """\
Convert an EfficientNet-B0 expression model to a Keras 3 file the efficientnet plugin takes as
weights: Savchenko's enet_b0_7.pt (a whole pickled timm model), a state_dict of timm's
tf_efficientnet_b0, or an HSEmotion ONNX file (enet_b0_8_best_afew.onnx). The Keras model takes
raw RGB 0-255 at 224x224 (x/255 and the ImageNet mean and std are inside it) and outputs the
source's softmax in the source's class order, recorded in OUT.json next to it. Source and
conversion are run on the same random images first: nothing is written when their probabilities
differ by more than 1e-4. Needs pip install "feph_finetune[convert]" (ONNX) or
"feph_finetune[convert-torch]" (.pt).
"""


def convert_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m feph_finetune convert", description=CONVERT_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="a .onnx file, or a PyTorch .pt/.pth file (state_dict or whole model)")
    parser.add_argument("out", type=Path, metavar="OUT", help="OUT.keras (whole model) or OUT.weights.h5 (weights only)")
    parser.add_argument("--trust-pickle", action="store_true", help="allow a whole pickled model (enet_b0_7.pt): unpickling runs code named in the file, so only for files you trust")
    parser.add_argument("--classes", help="the source's class names in output order, comma-separated (default: HSEmotion's 7 or 8)")
    return parser


# --- commands ------------------------------------------------------------------------------------


def cmd_plugins(args, console: Console) -> int:
    from feph_finetune.plugins import get_plugins

    infos = get_plugins().info()
    if args.json:
        print(json.dumps([info.as_dict() for info in infos], indent=2))
        return EXIT_OK
    table = Table(title="feph_finetune plugins")
    for column in ("name", "origin", "hooks"):
        table.add_column(column)
    for info in infos:
        table.add_row(info.name, info.origin, ", ".join(info.hooks))
    console.print(table)
    return EXIT_OK


def cmd_data(args, console: Console) -> int:
    from feph_finetune.dataset import load_dataset
    from feph_finetune.describe import describe_dataset, render_description

    from feph_finetune.dataset import DatasetError

    dataset = load_dataset(args.root, args.labels, args.images)
    try:
        description = describe_dataset(dataset, folds=args.folds, seed=args.seed, test_fraction=args.test_fraction, group_by=args.group_by)
    except ValueError as error:  # e.g. fewer sequences than folds
        raise DatasetError(f"{args.root}: cannot split: {error}") from error
    if args.json:
        print(json.dumps(description, indent=2))
    else:
        render_description(description, console)
    return EXIT_OK


def cmd_synth(args, console: Console) -> int:
    from feph_finetune.synth import write_synthetic_dataset

    summary = write_synthetic_dataset(args.out, images=args.images, seed=args.seed, domain=args.domain)
    console.print(f"wrote {summary.get('kept', args.images)} images ({args.domain}) to {args.out}")
    return EXIT_OK


def cmd_report(args, console: Console) -> int:
    from feph_finetune.reports import render
    from feph_finetune.results import RunStore

    if not args.outdir.is_dir():
        console.print(f"[red]error:[/red] {args.outdir}: no such results directory")
        return EXIT_USAGE
    records = RunStore(args.outdir).records()
    if not records:
        console.print(f"[red]error:[/red] {args.outdir}: no finished runs (no */result.json)")
        return EXIT_USAGE
    render(records, args.format, console)
    return EXIT_OK


def cmd_convert(args, console: Console) -> int:
    from feph_finetune.convert import ConversionError, convert

    classes = [name for name in args.classes.split(",")] if args.classes else None
    try:
        convert(args.source, args.out, trust_pickle=args.trust_pickle, classes=classes, report=lambda line: console.print(line, markup=False, highlight=False))
    except ConversionError as error:
        Console(stderr=True).print(f"[bold red]error:[/bold red] {error}", highlight=False)
        return EXIT_USAGE
    return EXIT_OK


def print_runs(runs, as_json: bool, console: Console) -> None:
    if as_json:
        print(json.dumps([run.describe() for run in runs], indent=2))
        return
    table = Table(title=f"{len(runs)} runs")
    for column in ("id", "experiment", "phase", "fold", "model", "optimizer", "preprocess", "augment", "class weights", "variant"):
        table.add_column(column)
    for run in runs:
        info = run.describe()
        table.add_row(
            run.id, run.experiment, run.phase, "" if run.fold is None else str(run.fold), info["model"], info["optimizer"] or "No-FT",
            ", ".join(info["preprocess"]), ", ".join(info["augment"]), info["class_weights"], " ".join(f"{k}={v}" for k, v in run.variant.items()),
        )
    console.print(table)


def cmd_run(args, console: Console) -> int:
    from feph_finetune.config import read_config
    from feph_finetune.matrix import apply_demo, build_matrix, select
    from feph_finetune.plugins import get_plugins

    raw = read_config(args.config, args.overrides)
    if args.demo:
        from feph_finetune import demo

        settings = demo.demo_settings(raw)
        paths = demo.demo_paths(settings)
        apply_demo(raw, str(paths.data), {name: str(path) for name, path in paths.base_models.items()})
    plugins = get_plugins()
    matrix = build_matrix(raw, plugins, check_root=not args.demo)  # the demo's data is written below
    runs = select(matrix, args.only, args.phase)
    if args.demo and not args.dry_run:
        demo.prepare_demo(settings, paths, console, backbones={run.config["model"] for run in runs})
    if args.dry_run:
        print_runs(runs, args.json, console)
        return EXIT_OK
    from feph_finetune.reports import render
    from feph_finetune.results import RunStore
    from feph_finetune.runner import MatrixRunner

    output = args.output or Path("runs/demo" if args.demo else matrix.output)
    store = RunStore(output)
    outcome = MatrixRunner(matrix, plugins, store, console).run_all(runs, force=args.force)
    if outcome.skipped:
        console.print(f"skipped {len(outcome.skipped)} finished runs (use --force to rerun them)")
    records = store.records([run.id for run in runs])
    if records:
        render(records, "table", console)
    if outcome.failed:
        console.print(f"[red]{len(outcome.failed)} of {len(runs)} runs failed:[/red] {', '.join(outcome.failed)} (details in each run's result.json)")
        return EXIT_FAILED_RUNS
    console.print(f"results in {output}/")
    return EXIT_OK


COMMANDS = {
    "plugins": (plugins_parser, cmd_plugins),
    "data": (data_parser, cmd_data),
    "synth": (synth_parser, cmd_synth),
    "report": (report_parser, cmd_report),
    "convert": (convert_parser, cmd_convert),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    console = Console()
    if not console.is_terminal:  # a log file or a pipe: wide enough for the paper's tables
        console = Console(width=160)
    errors = Console(stderr=True)
    if argv and argv[0] in COMMANDS:
        make_parser, command = COMMANDS[argv[0]]
        args = make_parser().parse_args(argv[1:])
    else:
        args, command = run_parser().parse_args(argv), cmd_run
    return guarded(command, args, console, errors)


def guarded(command, args, console: Console, errors: Console) -> int:
    """Turn the expected failures into one-screen messages and exit code 2."""
    from feph_finetune.config import ConfigError
    from feph_finetune.dataset import DatasetError
    from feph_finetune.plugins import PluginLoadError

    try:
        return command(args, console)
    except (ConfigError, DatasetError, PluginLoadError) as error:
        problems = getattr(error, "problems", None)
        lines = [str(problem) for problem in problems] if problems else [str(error)]
        heading = "error:" if len(lines) == 1 else f"error: {len(lines)} problems"
        errors.print(f"[bold red]{heading}[/bold red]")
        for line in lines:
            errors.print(line, markup=False, highlight=False, soft_wrap=True)
        return EXIT_USAGE
    except KeyboardInterrupt:
        errors.print("interrupted: finished runs are saved; run the same command again to continue")
        return 130

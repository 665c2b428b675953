"""Every configuration mistake is caught before any work: exit code 2, all problems at once, each
naming its place (file:line key), and ``--dry-run`` catches them all.

The inputs are those of issue 12 §1: plugin option values, seeds, absurd sizes, No-FT without a
pretrained classifier, a missing weights file, EfficientNet with a normalising step, and datasets
that no run could use. No test here trains or imports TensorFlow.
"""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import pytest

from feph_finetune import Option, hookimpl
from feph_finetune.cli import main
from feph_finetune.config.reading import ConfigError, read_config
from feph_finetune.config.matrix import build_matrix
from feph_finetune.config.options import option_problems
from feph_finetune.plugins import get_plugins
from fephfixture import frame_name, write_keras_archive, write_png

from conftest import REPO, line_of, write_matrix


def dry_run(path, capsys, *extra: str) -> tuple[int, str]:
    """``python -m feph_finetune PATH --dry-run`` in process: its exit code and stderr."""
    code = main([str(path), "--dry-run", *extra])
    return code, capsys.readouterr().err


def place(path, text: str, key: str) -> str:
    """``file:line key`` of the line holding ``text``, as error messages name it."""
    return f"{path}:{line_of(path, text)} {key}"


# --- plugin options and seeds, all at once ------------------------------------------------------


def test_bad_option_values_and_seeds_are_all_reported_at_once_with_their_lines(tmp_path, synthetic_feph, capsys):
    experiments = """
    [defaults.options.flip]
    mode = "dubble"

    [defaults.options.face_crop]
    margin = -5.0
    scale_factor = inf

    [experiments.A]
    augment = ["flip"]
    seed = 4294967296

    [experiments.B]
    grid = { seed = [1, -1] }

    [experiments.C]
    fine_tune = false
    """
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, experiments)
    code, error = dry_run(path, capsys)
    assert code == 2
    assert "Traceback" not in error
    expected = [
        f"{place(path, 'mode = ', 'defaults.options.flip.mode')}: 'dubble' is not one of 'double', 'random' (did you mean 'double'?)",
        f"{place(path, 'margin = ', 'defaults.options.face_crop.margin')}: must be >= 0, not -5.0",
        f"{place(path, 'scale_factor = ', 'defaults.options.face_crop.scale_factor')}: must be a finite number, not inf",
        f"{place(path, 'seed = 4294967296', 'experiments.A.seed')}: must be <= 4294967295, not 4294967296",
        f"{place(path, 'grid = ', 'experiments.B.grid.seed')}: must be >= 0, not -1",
        f"{place(path, 'fine_tune = false', 'experiments.C.fine_tune')}: No-FT (fine_tune = false) evaluates the model's "
        "pretrained expression classifier, but 'mobilenet' with weights = 'none', alpha = 0.25 has none",
    ]
    for line in expected:
        assert line in error, f"missing: {line}\n{error}"
    assert f"error: {len(expected)} problems" in error


def test_top_level_seed_outside_32_bits_is_refused(tmp_path, synthetic_feph, capsys):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\n")
    code, error = dry_run(path, capsys, "--set", "seed=-3")
    assert code == 2 and "--set seed=-3: must be >= 0, not -3" in error


# --- sizes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("setting, message", [
    ("dataset.folds=1", "must be >= 2, not 1"),
    ("dataset.test_fraction=1.0", "must be < 1, not 1.0"),
    ("dataset.test_fraction=nan", "must be a finite number, not nan"),
    ("defaults.batch_size=0", "must be >= 1, not 0"),
    ("defaults.input_size=100000", "must be <= 1024, not 100000"),
    ("defaults.input_size=8", "must be >= 32, not 8"),
    ("defaults.validation_split=-0.5", "must be >= 0, not -0.5"),
    ("defaults.threads=-1", "must be >= 0, not -1"),
    ("defaults.options.adam.epochs=-1", "must be >= 0, not -1"),
    ("defaults.options.adam.head_epochs=99999999999", "must be <= 10000, not 99999999999"),
    ("defaults.options.adam.lr=0", "must be > 0, not 0"),
])
def test_sizes_outside_their_range_are_refused(tmp_path, synthetic_feph, capsys, setting, message):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, '[experiments.A]\nphases = ["exploratory", "cv"]\n')
    code, error = dry_run(path, capsys, "--set", setting)
    assert code == 2 and f"--set {setting}: {message}" in error, error


def test_absurd_fold_count_is_refused_at_once_instead_of_hanging(tmp_path, synthetic_feph):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, '[experiments.A]\nphases = ["cv"]\n')
    result = subprocess.run(
        [sys.executable, "-m", "feph_finetune", str(path), "--dry-run", "--set", "dataset.folds=99999999999999999999"],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )
    assert result.returncode == 2
    assert "dataset.folds" in result.stderr and "must be <= 10000" in result.stderr


def test_folds_are_bounded_by_the_groups_of_the_data(tmp_path, synthetic_feph, capsys):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, '[experiments.A]\nphases = ["cv"]\n')
    code, error = dry_run(path, capsys, "--set", "dataset.folds=9000")
    assert code == 2
    assert "--set dataset.folds=9000: 9000 folds need at least 9000 groups, but the" in error
    assert "group_by = 'sequence'" in error


# --- combinations of plugins ----------------------------------------------------------------------


@pytest.mark.parametrize("weights", ["none", "imagenet"])
def test_no_ft_without_a_pretrained_classifier_is_refused(tmp_path, synthetic_feph, capsys, weights):
    experiments = f"""
    [experiments.M0]
    fine_tune = false
    options.mobilenet.weights = "{weights}"
    """
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, experiments)
    code, error = dry_run(path, capsys)
    assert code == 2
    assert place(path, "fine_tune = false", "experiments.M0.fine_tune") in error
    assert "No-FT (fine_tune = false)" in error and f"weights = '{weights}'" in error and "has none" in error


def test_no_ft_with_a_whole_model_file_passes_validation(tmp_path, synthetic_feph, capsys):
    model_file = tmp_path / "savchenko.keras"
    write_keras_archive(model_file)
    experiments = f'[experiments.M0]\nfine_tune = false\noptions.mobilenet.weights = "{model_file}"\n'
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, experiments)
    code, error = dry_run(path, capsys)
    assert code == 0, error


def test_a_weights_file_that_does_not_exist_is_refused(tmp_path, synthetic_feph, capsys):
    missing = tmp_path / "models" / "mobilenet_7.h5"
    experiments = f'[experiments.M0]\nfine_tune = false\noptions.mobilenet.weights = "{missing}"\n'
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, experiments)
    code, error = dry_run(path, capsys)
    assert code == 2
    assert f"{place(path, 'options.mobilenet.weights', 'experiments.M0.options.mobilenet.weights')}: no such file" in error


def test_efficientnet_with_normalize_is_refused_before_any_work(tmp_path, synthetic_feph, capsys):
    experiments = """
    [experiments.E]
    model = "efficientnet"
    preprocess = ["face_crop", "normalize"]
    """
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, experiments)
    code, error = dry_run(path, capsys)
    assert code == 2
    assert place(path, 'preprocess = ["face_crop", "normalize"]', "experiments.E.preprocess") in error
    assert "remove 'normalize'" in error


# --- a third-party plugin gets the same mechanism -------------------------------------------------


class ThirdPartyNormaliser:
    """A plugin that declares its options with Option and says that it normalises pixels."""

    @hookimpl
    def plugin_options(self):
        return {
            "strength": Option(1.0, minimum=0, maximum=2, exclusive_minimum=True, help="how much, in (0, 2]"),
            "table": Option("", path="file", choices=("",), suffixes=(".csv",), help="a lookup table"),
            "kind": Option("mean", choices=("mean", "median"), retired={"average": "say 'mean'"}),
            "steps": [1, 2],
        }

    @hookimpl
    def plugin_traits(self, options):
        return {"normalizes_pixels"}

    @hookimpl
    def preprocess(self, context):
        return None


def test_a_third_party_plugin_declares_options_and_traits_the_same_way(tmp_path, synthetic_feph):
    plugins = get_plugins()
    plugins.pm.register(ThirdPartyNormaliser(), name="third")
    experiments = """
    [experiments.A]
    preprocess = ["face_crop", "third"]
    options.third = { strength = 0, table = "lookup.txt", kind = "average", steps = [1, "two"] }

    [experiments.E]
    model = "efficientnet"
    preprocess = ["third"]
    """
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, experiments)
    with pytest.raises(ConfigError) as raised:
        build_matrix(read_config(path), plugins)
    text = str(raised.value)
    assert "experiments.A.options.third.strength: must be > 0, not 0" in text
    assert "experiments.A.options.third.table: 'lookup.txt' is neither one of '' nor a file ending in .csv (a lookup table)" in text
    assert "experiments.A.options.third.kind: 'average' is no longer accepted: say 'mean'" in text
    assert "experiments.A.options.third.steps: expected array of integers, got array [1, 'two']" in text
    assert "experiments.E.preprocess: the model from 'efficientnet' normalises its input itself, and 'third'" in text


def test_a_plugin_declaring_an_unknown_trait_is_named(tmp_path, synthetic_feph):
    class Boastful:
        @hookimpl
        def plugin_traits(self, options):
            return {"makes_coffee"}

        @hookimpl
        def preprocess(self, context):
            return None

    plugins = get_plugins()
    plugins.pm.register(Boastful(), name="boastful")
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, '[experiments.A]\npreprocess = ["boastful"]\n')
    with pytest.raises(ConfigError) as raised:
        build_matrix(read_config(path), plugins)
    assert "plugin 'boastful' failed in hook 'plugin_traits'" in str(raised.value)
    assert "'makes_coffee'" in str(raised.value) and "normalizes_pixels" in str(raised.value)


def test_option_declarations_check_what_they_declare(tmp_path):
    bounded = Option(0.5, minimum=0, maximum=1, exclusive_maximum=True)
    assert option_problems(0, bounded) == []
    assert option_problems(1, bounded) == ["must be < 1, not 1"]
    assert option_problems(math.inf, bounded) == ["must be a finite number, not inf"]
    assert option_problems(math.inf, Option(0.5, finite=False)) == []
    assert option_problems(True, bounded) == ["expected float, got boolean True"]
    listed = Option(["a"], choices=("a", "b"))
    assert option_problems(["a", "b"], listed) == []
    assert option_problems(["a", "c"], listed) == ["'c' is not one of 'a', 'b'"]
    existing = tmp_path / "w.keras"
    existing.write_bytes(b"")
    weights = Option("none", choices=("none",), path="file", suffixes=(".keras",))
    assert option_problems(str(existing), weights) == []
    assert option_problems("none", weights) == []
    assert option_problems(str(tmp_path / "x.keras"), weights)[0].startswith("no such file")
    assert option_problems(str(tmp_path / "x.keras"), weights, check_paths=False) == []
    checked = Option(3, check=lambda value: None if value % 2 else "must be odd")
    assert option_problems(4, checked) == ["must be odd"]
    with pytest.raises(ValueError, match="does not fit its own declaration: .c. is not one of .a., .b."):
        Option("c", choices=("a", "b"))


# --- datasets no run could use --------------------------------------------------------------------


def write_release(root, rows: list[tuple[str, str]], images: list[str]) -> None:
    """A labels CSV with ``rows`` (External ID, Facial_label) and the named images."""
    for number, name in enumerate(images):
        write_png(root / "images" / name, value=number)
    lines = ["External ID,Facial_label"] + [f"{external_id},{label}" for external_id, label in rows]
    (root / "labels.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_a_labels_csv_with_only_a_header_is_refused_by_the_dry_run(tmp_path, capsys):
    root = tmp_path / "feph"
    write_release(root, [], [frame_name("01April_2010_Thursday", 0, 1)])
    path = write_matrix(tmp_path / "m.toml", root, "[experiments.A]\n")
    code, error = dry_run(path, capsys)
    assert code == 2
    assert f"{place(path, 'root = ', 'dataset.root')}: no usable image: the labels CSV has 0 rows" in error


def test_labels_written_as_floats_are_read_as_their_integer(tmp_path, capsys):
    root = tmp_path / "feph"
    names = [frame_name("01April_2010_Thursday", sequence, 1) for sequence in range(4)]
    write_release(root, [(name, f"{code}.0") for name, code in zip(names, ("3", "3", "6", "0"))], names)
    path = write_matrix(tmp_path / "m.toml", root, "[experiments.A]\n")
    code, error = dry_run(path, capsys)
    assert code == 0, error


def test_fewer_groups_than_folds_is_refused_by_the_dry_run(tmp_path, capsys):
    root = tmp_path / "feph"
    names = [frame_name("01April_2010_Thursday", sequence, frame) for sequence in range(2) for frame in range(3)]
    write_release(root, [(name, "1") for name in names], names)
    path = write_matrix(tmp_path / "m.toml", root, '[experiments.A]\nphases = ["exploratory", "cv"]\n')
    code, error = dry_run(path, capsys)   # folds = 3 in the test defaults, 2 sequences
    assert code == 2
    assert f"{place(path, 'folds = 3', 'dataset.folds')}: 3 folds need at least 3 groups, but the 6 usable images form only 2" in error
    code, error = dry_run(path, capsys, "--set", "dataset.group_by='signer'")
    assert code == 2 and "--set dataset.group_by='signer': a hold-out split needs at least 2 groups, but the 6 usable images form only 1 (group_by = 'signer')" in error


def test_an_empty_dataset_folder_is_refused(tmp_path, capsys):
    root = tmp_path / "empty"
    root.mkdir()
    path = write_matrix(tmp_path / "m.toml", root, '[experiments.A]\nmodel = "mobilenett"\noptions.flip.mode = "dubble"\n')
    code, error = dry_run(path, capsys)
    assert code == 2
    assert "dataset.root: no labels CSV" in error   # all reported together:
    assert "experiments.A.model: plugin 'mobilenett' is not installed" in error
    assert "experiments.A.options.flip.mode: 'dubble' is not one of" in error


def test_the_dry_run_reads_the_index_without_tensorflow_or_decoding(tmp_path, synthetic_feph):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, '[experiments.A]\nphases = ["exploratory", "cv"]\n')
    code = textwrap.dedent(f"""
        import sys
        import feph_finetune.data.images as dataset
        decoded = []
        real_decode = dataset._decode
        dataset._decode = lambda path: decoded.append(path) or real_decode(path)
        from feph_finetune.cli import main
        assert main([{str(path)!r}, "--dry-run"]) == 0
        assert "tensorflow" not in sys.modules and "keras" not in sys.modules, "TensorFlow was imported"
        assert decoded == [], f"{{len(decoded)}} images decoded"
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")


def test_the_demo_dry_run_works_before_its_data_exists(tmp_path, capsys):
    toml = REPO / "experiments.toml"
    code = main([str(toml), "--demo", "--dry-run", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert '"experiment": "M0"' in captured.out


def test_labels_with_control_characters_are_refused_in_one_pass_naming_their_lines(tmp_path, synthetic_feph, capsys):
    experiments = """
    [experiments.A]
    label = "FT\\u001b[31m"

    [experiments.B]
    cv_label = "two\\tcolumns"
    """
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, experiments)
    code, err = dry_run(path, capsys)
    assert code == 2 and err.startswith("error: 2 problems") and "\x1b" not in err and "\t" not in err, err
    text = " ".join(err.split())
    first, second = place(path, 'label = "FT', "experiments.A.label"), place(path, 'cv_label = "two', "experiments.B.cv_label")
    assert f"{first}: 'FT\\x1b[31m' holds control or invisible characters" in text, err
    assert f"{second}: 'two\\tcolumns' holds control or invisible characters" in text, err

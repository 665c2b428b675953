"""Reading an experiments TOML: parsing, ``--set`` overrides, and checking tables against the schema.

Nothing here runs anything: it turns text into plain dicts and reports every problem it finds at
once, each naming its place (``file:line key``), so that a user fixes the file in one pass.
"""

from __future__ import annotations

import copy
import difflib
import io
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, Mapping

from feph_finetune.config.options import as_option, option_problems, type_name
from feph_finetune.config.schema import DATASET_OPTIONS, EXPERIMENT_OPTIONS, REPORT_OPTIONS, TOP_LEVEL_OPTIONS, defaults_of
from feph_finetune.data.user_files import MAX_TEXT_BYTES, UnreadableFile, nesting_depth, read_user_file
from feph_finetune.printable import shortened

#: The defaults of each table, from its declarations (:mod:`feph_finetune.config.schema`).
TOP_LEVEL = defaults_of(TOP_LEVEL_OPTIONS)
DATASET_DEFAULTS = defaults_of(DATASET_OPTIONS)
EXPERIMENT_DEFAULTS: dict[str, Any] = defaults_of(EXPERIMENT_OPTIONS)
REPORT_DEFAULTS = defaults_of(REPORT_OPTIONS)

#: Keys an experiment does not take from the experiment it ``extends`` (they describe it alone).
NOT_INHERITED = ("label", "cv_label", "phases", "extends")

#: Experiment keys that never change a run's result, only how the run executes or what else it
#: leaves behind (``save_model``: a model bundle; ``timeout``: seconds before its executor stops
#: it): the run id does not depend on them, so setting one neither splits nor merges a
#: configuration's runs, and a grid over one is refused.
RESULT_NEUTRAL_KEYS = ("save_model", "timeout")

#: The result-neutral keys that ids computed before this rule included: the id hashes them at
#: their default (the others are left out), so every id computed before is unchanged.
HASHED_AT_DEFAULT = ("save_model",)

#: Experiment keys only training reads: a No-FT run (``fine_tune = false``) evaluates the
#: pretrained model on the test split, so its id hashes these at their default (and the options
#: of no plugin they name), as :data:`HASHED_AT_DEFAULT`; a plugin's options declare the same
#: with ``Option(training_only=True)`` (a model's head ``dropout`` and ``cut_layer``). Not here,
#: though No-FT uses them only to evaluate: ``batch_size`` (the evaluation batch: a batch's float
#: sums, and so the predictions' last bits, can depend on its size) and ``deterministic`` (the
#: ops' determinism of the evaluation too).
TRAINING_ONLY_KEYS = ("optimizer", "augment", "class_weights", "validation_split", "train_batchnorm", "head_features")

#: The ``[dataset]`` keys a phase never reads, each hashed at its default in that phase's run
#: ids (as :data:`HASHED_AT_DEFAULT`): the hold-out split reads ``test_fraction``, not ``folds``;
#: the folds read ``folds``, not ``test_fraction`` (:mod:`feph_finetune.data.splits`).
NOT_READ_IN_PHASE = {"exploratory": ("folds",), "cv": ("test_fraction",)}

#: ``[dataset]`` keys that name a file or folder: a run id hashes their normalised spelling.
DATASET_PATHS = ("root", "labels", "images")

#: The ``[dataset]`` keys that say where in the root the labels and images are, not what they
#: hold: the data's fingerprint says that (a format's fingerprint covers the labels file's bytes
#: and the images it lists: :class:`feph_finetune.Dataset`). A run id whose data has a fingerprint
#: hashes them at their default (as :data:`HASHED_AT_DEFAULT`), so that naming the file the format
#: finds by itself (``labels = "FePh_labels.csv"``), or spelling it absolute, is the same
#: configuration as not naming it, and ids of files that never named them stay. ``root`` stays
#: hashed as spelled: ``data`` and ``/home/me/data`` keep the ids existing results hold.
LOCATED_BY_THE_FINGERPRINT = ("labels", "images")

#: ``[dataset]`` keys added after run ids existed: at their default (FePh's format, grouping by
#: ``group_by``) they are left out of a run's id, so every id computed before is unchanged.
DATASET_DEFAULTS_UNHASHED = ("format", "group_pattern")

#: Which experiment keys name plugins, and the hook each plugin must implement.
PLUGIN_KEYS = {
    "model": "build_model",
    "preprocess": "preprocess",
    "augment": "augment",
    "optimizer": "optimizer_schedule",
    "class_weights": "weight_classes",
    "evaluate": "evaluate",
}

#: What an experiment name may be: it is a folder-safe word of run ids and tables, and a word
#: on the command line (``--only NAME``), where a leading ``-`` would read as an option.
EXPERIMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")

#: :data:`EXPERIMENT_NAME` in words, the message of a name that breaks it.
EXPERIMENT_NAME_RULE = "an experiment name starts with an ASCII letter or digit and goes on with ASCII letters, digits and _ . + - only"


def experiment_name_problem(name: str) -> str:
    """Why ``name`` cannot be an experiment's name ('' when it can): :data:`EXPERIMENT_NAME_RULE`."""
    return "" if EXPERIMENT_NAME.fullmatch(name) else EXPERIMENT_NAME_RULE


@dataclass(frozen=True)
class Problem:
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


#: How a problem's place starts when it has a line: ``FILE:LINE KEY``.
_FILE_LINE = re.compile(r"^(.+):(\d+) ")


def in_file_order(problems: list[Problem]) -> list[Problem]:
    """``problems`` without repeats, as a reader of the file fixes them: those with a file and a
    line first, by file then line (those of one line in the order found), then the others (a
    flag, a folder, a key without a line) in the order found."""
    def position(problem: Problem) -> tuple:
        found = _FILE_LINE.match(problem.where)
        return (0, found.group(1), int(found.group(2))) if found else (1, "", 0)

    return sorted(dict.fromkeys(problems), key=position)


class ConfigError(Exception):
    """One or more problems in a configuration; each names its place."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(problem) for problem in problems))


def close_match(word: str, choices) -> str:
    """A ' (did you mean X?)' hint, or an empty string."""
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {matches[0]!r}?)" if matches else ""


# --- locating keys in the text -------------------------------------------------------------------

_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*((?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*'))*)\s*=")


#: A part of a dotted key that TOML reads without quotes.
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def dotted_key(parts: "list[str] | tuple[str, ...]") -> str:
    """The TOML dotted key of ``parts``, each quoted where TOML needs it (``experiments."A.b"``):
    the inverse of :func:`dotted_key_parts`, for keys the tool writes into commands it suggests
    (an experiment may be named ``A.b`` or ``A+b``, which a bare part would split or refuse)."""
    return ".".join(part if _BARE_KEY.fullmatch(part) else _basic_string(part) for part in parts)


def _basic_string(text: str) -> str:
    """``text`` as a TOML basic string: quotes, backslashes and control characters escaped."""
    escaped = "".join(f"\\{char}" if char in '"\\' else f"\\u{ord(char):04x}" if ord(char) < 0x20 or ord(char) == 0x7F else char
                      for char in text)
    return f'"{escaped}"'


def split_dotted(key: str) -> list[str]:
    """Split a TOML dotted key (``a."b.c".d``) into its parts."""
    parts = re.findall(r"\"([^\"]*)\"|'([^']*)'|([^.\s]+)", key)
    return [quoted or single or bare for quoted, single, bare in parts]


class KeyLocator:
    """Maps dotted key paths to the line of the TOML text that sets them."""

    def __init__(self, path: str, text: str):
        self.path = path
        self.lines: dict[tuple[str, ...], int] = {}
        table: tuple[str, ...] = ()
        for number, line in enumerate(text.splitlines(), start=1):
            header = _HEADER.match(line)
            if header:
                table = tuple(split_dotted(header.group(1)))
                self.lines.setdefault(table, number)
                continue
            key = _KEY.match(line)
            if key:
                self.lines.setdefault(table + tuple(split_dotted(key.group(1))), number)

    def where(self, keys: tuple[str, ...]) -> str:
        dotted = ".".join(keys)
        for end in range(len(keys), 0, -1):
            if keys[:end] in self.lines:
                return f"{self.path}:{self.lines[keys[:end]]} {dotted}"
        return f"{self.path} {dotted}" if dotted else self.path


# --- reading -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArgumentNames:
    """How problems name the arguments of an invocation: as the command line's flags (``--only
    B``, ``--set KEY=VALUE``; :data:`COMMAND_LINE`) or as the keyword arguments of the Python API
    (``only='B'``, ``overrides='KEY=VALUE'``; :data:`PYTHON`), so that each reader is told of
    what they wrote."""

    command_line: bool

    def __call__(self, name: str, value: Any = None) -> str:
        """The place of argument ``name`` (``"jobs"``), with its ``value`` when given (a list's
        items follow a flag as separate words), each value :func:`shortened` (an override's
        key and value each to 120 characters: :func:`shortened_assignment`)."""
        shown = shortened_assignment if name == "overrides" else shortened
        if not self.command_line:
            return name if value is None else f"{name}={shown(repr(value))}"
        flag = _FLAGS.get(name, f"--{name}")
        if value is None:
            return flag
        return " ".join([flag, *map(shown, value)]) if isinstance(value, (list, tuple)) else f"{flag} {shown(value)}"


def shortened_assignment(assignment: str) -> str:
    """``KEY=VALUE`` as a place names it: the key and the value each :func:`shortened` to 120
    characters, so that a typical key (``experiments.NAME.options.PLUGIN.KEY``) and path stay
    whole and a value of kilobytes does not."""
    key, equals, value = assignment.partition("=")
    return f"{shortened(key, 120)}={shortened(value, 120)}" if equals else shortened(assignment, 120)


#: The arguments whose flag is not ``--NAME``.
_FLAGS = {"overrides": "--set"}
COMMAND_LINE = ArgumentNames(command_line=True)
PYTHON = ArgumentNames(command_line=False)


@dataclass
class RawConfig:
    """The TOML as parsed, with the overrides applied and a way to name places in it."""

    data: dict[str, Any]
    locator: KeyLocator
    overridden: dict[tuple[str, ...], str]
    #: Keys whose value was copied from another key (``[demo] folds`` into ``dataset.folds``):
    #: a problem with it is named where the value was written.
    copied_from: dict[tuple[str, ...], tuple[str, ...]] = field(default_factory=dict)
    #: Tracking plugins the command line enables (``--track NAME``) beside ``[tracking] plugins``.
    track: list[str] = field(default_factory=list)
    #: How problems name the invocation's arguments (``--set ...`` or ``overrides=...``).
    names: ArgumentNames = COMMAND_LINE

    def where(self, *keys: str) -> str:
        for end in range(len(keys), 0, -1):
            if tuple(keys[:end]) in self.copied_from:
                return self.where(*self.copied_from[tuple(keys[:end])], *keys[end:])
        for end in range(len(keys), 0, -1):  # a key inside a table given with --set: that --set, then the key
            if tuple(keys[:end]) in self.overridden:
                given = self.names("overrides", self.overridden[tuple(keys[:end])])
                return given if end == len(keys) else f"{given} {'.'.join(keys)}"
        return self.locator.where(tuple(keys))


def override_form(names: ArgumentNames = COMMAND_LINE) -> str:
    """What a malformed override is told, its examples written as ``names`` writes overrides."""
    examples = " or ".join(names("overrides", example) for example in ("dataset.root=/data/FePh", "experiments.M2.batch_size=16"))
    return f"malformed: expected KEY=VALUE where KEY is a dotted TOML key, e.g. {examples}"


def parse_override(assignment: str, names: ArgumentNames = COMMAND_LINE) -> tuple[list[str], Any]:
    """``key.path=value`` as ``(["key", "path"], value)``; ConfigError when malformed.

    The key is parsed by the TOML parser itself, so it follows TOML's rules for dotted keys
    (bare parts of letters, digits, ``_`` and ``-``, or quoted parts; no empty part). The value
    is read as a TOML value when it is one (``16``, ``1e-4``, ``true``, ``["flip"]``), else taken
    as a string (``/data/FePh``).
    """
    key, equals, value = assignment.partition("=")
    keys = dotted_key_parts(key)
    if not equals or keys is None:
        raise ConfigError([Problem(names("overrides", assignment), override_form(names))])
    try:
        parsed_table = tomllib.loads(f"v = {value.strip()}")
    except (tomllib.TOMLDecodeError, RecursionError):  # RecursionError: nested past Python's stack
        parsed_table = {}
    except ValueError:  # an integer longer than Python reads
        raise ConfigError([Problem(names("overrides", assignment), too_long_number())]) from None
    parsed = parsed_table["v"] if list(parsed_table) == ["v"] else value.strip()
    return keys, parsed


def dotted_key_parts(key: str) -> list[str] | None:
    """The parts of a TOML dotted key (``experiments."A.b".seed``: ``experiments``, ``A.b``,
    ``seed``), read by the TOML parser itself, or None when ``key`` is not one."""
    if "\n" in key or "\r" in key:
        return None
    try:
        table = tomllib.loads(f"{key} = 0")
    except tomllib.TOMLDecodeError:
        return None
    parts = []
    while isinstance(table, dict) and len(table) == 1:
        (part, table), = table.items()
        parts.append(part)
    return parts or None


#: The deepest nesting of tables, arrays and inline tables a configuration may have: an
#: experiments TOML is at most 5 deep (``experiments.NAME.plugins.P.option``, a list inside); far
#: deeper text (hand-made) would exhaust Python's stack in the code that checks and copies it.
MAX_TOML_DEPTH = 64


def read_config(path: Path, overrides: list[str] = (), names: ArgumentNames = COMMAND_LINE) -> RawConfig:
    """Parse the TOML at ``path`` and apply ``--set`` overrides; syntax errors name the line.
    ``names``: how problems name the overrides (and, later, the other arguments)."""
    try:
        data = read_user_file(path, MAX_TEXT_BYTES)
        text = io.StringIO(data.decode("utf-8-sig"), newline=None).read()  # a BOM (Notepad) dropped; newlines as read_text reads them
    except UnreadableFile as error:
        raise ConfigError([Problem(str(path), "no such file" if error.missing else f"cannot read: it {error}")]) from None
    except UnicodeDecodeError as error:
        raise ConfigError([Problem(str(path), not_utf8(data, error))]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError([Problem(str(path), f"TOML syntax error: {error}")]) from None
    except ValueError:  # an integer longer than Python reads: tomllib says neither where nor why
        raise ConfigError([Problem(_long_number_place(path, text), too_long_number())]) from None
    except RecursionError:  # tomllib parses nested arrays and inline tables recursively
        data = None
    if data is None or nesting_depth(data) > MAX_TOML_DEPTH:
        raise ConfigError([Problem(str(path), f"nested too deeply (tables, arrays or inline tables more than {MAX_TOML_DEPTH} levels deep)")])
    return RawConfig(data, KeyLocator(str(path), text), _apply_overrides(data, overrides, path, names), names=names)


def not_utf8(data: bytes, error: UnicodeDecodeError) -> str:
    """Where ``data`` stops being UTF-8, by line and column (in characters) as TOML's syntax
    errors say (the decoder gives a byte offset), and the byte."""
    before = data[: error.start]
    line_start = before[before.rfind(b"\n") + 1 :].decode("utf-8").removeprefix("\ufeff")  # valid up to the error
    line, column = before.count(b"\n") + 1, len(line_start) + 1
    return f"not UTF-8 text: byte 0x{data[error.start]:02x} at line {line}, column {column} cannot be read (save the file as UTF-8)"


def too_long_number() -> str:
    """What a TOML integer longer than Python reads is told (Python refuses to turn text of more
    than ``sys.get_int_max_str_digits()`` digits, 4300 by default, into an int)."""
    return f"a number too long to read (over {sys.get_int_max_str_digits()} digits)"


def _long_number_place(path: Path, text: str) -> str:
    """``path:line`` of the first run of digits in ``text`` longer than Python reads (``path``
    alone when none is found: the limit was changed, or the digits are split by ``_``)."""
    found = re.search(rf"[0-9]{{{sys.get_int_max_str_digits() + 1},}}", text)
    return f"{path}:{text.count(chr(10), 0, found.start()) + 1}" if found else str(path)


def config_from_dict(tables: Mapping[str, Any], overrides: list[str] = (), names: ArgumentNames = COMMAND_LINE) -> RawConfig:
    """A configuration given as a dict of TOML tables (a notebook's), copied, with ``--set``
    overrides applied; problems are named ``<dict> KEY``, there being no file or line."""
    data = copy.deepcopy(dict(tables))
    return RawConfig(data, KeyLocator(DICT_CONFIG, ""), _apply_overrides(data, overrides, Path(DICT_CONFIG), names), names=names)


#: How problems name a configuration given as a dict.
DICT_CONFIG = "<dict>"


def _apply_overrides(data: dict, overrides: list[str], path: Path, names: ArgumentNames) -> dict[tuple[str, ...], str]:
    """Apply ``--set KEY=VALUE`` overrides to ``data`` in place; return the keys set, each with
    its assignment (for naming a problem ``--set ...``). ConfigError listing every bad one."""
    overridden = {}
    given: dict[tuple[str, ...], tuple[str, Any]] = {}  # each key set, with its assignment and value
    problems = []
    for assignment in overrides:
        try:
            keys, value = parse_override(assignment, names)
            if _given_before(tuple(keys), value, given, names):
                continue
            given[tuple(keys)] = (assignment, value)
            _check_override_target(keys, data, path)
            created = _first_missing(data, keys)
            set_dotted(data, keys, value)
        except ConfigError as error:
            problems += [Problem(names("overrides", assignment), problem.message) for problem in error.problems]
            continue
        overridden[tuple(keys)] = assignment
        for end in range(len(created), len(keys)) if created else ():  # the tables only this --set makes (options.adma): their problems are its own
            overridden.setdefault(tuple(keys[:end]), assignment)
    if problems:
        raise ConfigError(problems)
    return overridden


def _given_before(keys: tuple[str, ...], value: Any, given: dict[tuple[str, ...], tuple[str, Any]], names: ArgumentNames) -> bool:
    """Whether an earlier override set ``keys`` to the same value (then this one changes nothing).
    ConfigError when one set it to another value, or set a table holding it or a key inside it:
    the last would otherwise win without a word (``--set seed=4 --set seed=5``)."""
    for earlier, (assignment, earlier_value) in given.items():
        shorter = min(len(earlier), len(keys))
        if earlier[:shorter] != keys[:shorter]:
            continue
        if earlier == keys and _same_value(value, earlier_value):
            return True
        if earlier == keys:
            said = f"{'.'.join(keys)} is given twice with different values, here and in {names('overrides', assignment)}; give it once"
        else:
            inner, outer = (earlier, keys) if len(earlier) > len(keys) else (keys, earlier)
            said = (f"{'.'.join(keys)} overlaps {names('overrides', assignment)}: {'.'.join(outer)} is a table holding "
                    f"{'.'.join(inner)}, and both are set; set each key once")
        raise ConfigError([Problem(".".join(keys), said)])
    return False


def flag_and_set_problem(raw: RawConfig, name: str, text: Any, value: Any, keys: tuple[str, ...]) -> Problem | None:
    """A command-line argument ``name`` (given as ``text``, meaning ``value``) that sets the
    setting ``keys`` which a ``--set`` sets too (itself or a table holding it) to another value:
    a problem naming both, as ``--set`` given twice is, where the flag would win without a word.
    The same value twice is fine (a path however spelt: ``runs/`` and ``runs``)."""
    assignment = next((raw.overridden[keys[:end]] for end in range(len(keys), 0, -1) if keys[:end] in raw.overridden), None)
    if assignment is None:
        return None
    table: Any = raw.data
    for key in keys:
        if not isinstance(table, dict) or key not in table:
            return None  # a --set made a table on the way, without this key
        table = table[key]
    if _same_value(table, value) or (isinstance(value, PurePath) and isinstance(table, str) and table and PurePath(table) == value):
        return None
    return Problem(raw.names(name, text), f"{'.'.join(keys)} is given twice with different values, here and in {raw.names('overrides', assignment)}; give it once")


def _same_value(one: Any, other: Any) -> bool:
    """Whether two override values are the same TOML value (``1`` and ``1.0`` are not; NaN is NaN)."""
    return type(one) is type(other) and (one == other or repr(one) == repr(other))


def _first_missing(data: dict, keys: list[str]) -> tuple[str, ...]:
    """The shortest part of the dotted key ``keys`` that ``data`` lacks (``()`` when it has all)."""
    table: Any = data
    for position, key in enumerate(keys):
        if not isinstance(table, dict) or key not in table:
            return tuple(keys[: position + 1])
        table = table[key]
    return ()


def _check_override_target(keys: list[str], data: dict, path: Path) -> None:
    """Refuse an override that would add an experiment the file does not have.

    ``--set`` changes settings; a typo in an experiment's name must not train an extra
    experiment with the defaults (``--set experiments.M3.batch_size=16`` when there is no M3).
    """
    if keys[0] != "experiments" or len(keys) < 2:
        return
    experiments = data.get("experiments")
    known = list(experiments) if isinstance(experiments, dict) else []
    if keys[1] not in known:
        listed = ", ".join(known) if known else "none"
        raise ConfigError([Problem(".".join(keys), f"no experiment {shortened(repr(keys[1]))} in {path}{close_match(keys[1], known)}; experiments: {listed}")])


def set_dotted(table: dict, keys: list[str], value: Any) -> None:
    for position, key in enumerate(keys[:-1]):
        table = table.setdefault(key, {})
        if not isinstance(table, dict):
            raise ConfigError([Problem(".".join(keys), f"{'.'.join(keys[: position + 1])} is {table!r} ({type_name(table)}), not a table")])
    table[keys[-1]] = value


def deep_merge(base: dict, override: dict) -> dict:
    """A copy of ``base`` with ``override`` laid over it, tables merged key by key."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


# --- types ---------------------------------------------------------------------------------------


def check_section(raw: RawConfig, table: Any, declarations: Mapping[str, Any], keys: tuple[str, ...], problems: list[Problem], owner: str = "") -> set[str]:
    """Check one table against its declarations (:class:`~feph_finetune.config.options.Option`
    or plain defaults): unknown keys (with a close match) and values that fail their checks, each
    a :class:`Problem` appended to ``problems``; a sub-table declared with ``Option(table=...)``
    is checked key by key the same way. Returns the keys whose values are invalid (or unknown),
    so that the caller goes on with the rest and skips only what depends on them; a ``table``
    that is not one is reported, and all of it is invalid (``{""}``). ``owner`` (``"executor
    'process'"``) names who declares the keys in unknown-key messages.
    """
    if not isinstance(table, dict):
        problems.append(Problem(raw.where(*keys), f"expected table, got {type_name(table)} {table!r}"))  # as option_problems says it
        return {""}
    invalid = set()
    for key, value in table.items():
        if key not in declarations:
            hint = close_match(key, declarations)
            if owner:
                problems.append(Problem(raw.where(*keys, key), f"{owner} has no option {key!r}{hint}; its options: {', '.join(declarations) or 'none'}"))
            else:
                problems.append(Problem(raw.where(*keys, key), f"unknown key {key!r}{hint}"))
            invalid.add(key)
            continue
        option = as_option(declarations[key])
        messages = option_problems(value, option)
        problems += [Problem(raw.where(*keys, key), message) for message in messages]
        if messages or (option.table is not None and check_section(raw, value, option.table, keys + (key,), problems)):
            invalid.add(key)
    return invalid


def flag_problems(flags: list[tuple[str, Any, Any]]) -> list[Problem]:
    """Command-line flags checked against the declarations of the settings they set:
    ``[(flag, value, declaration)]``, each problem named ``FLAG VALUE``."""
    return [Problem(f"{flag} {shortened(value)}", message) for flag, value, option in flags for message in option_problems(value, as_option(option))]


def valid_values(table: Any, declarations: Mapping[str, Any]) -> dict[str, Any]:
    """A table's defaults with its valid values laid over them (a sub-table's likewise): what
    checks that depend on a table go on with when some of its values are invalid (those keep
    their defaults, only to go on checking; :func:`check_section` reports them)."""
    given = table if isinstance(table, dict) else {}
    values = defaults_of(declarations)
    for key, value in given.items():
        option = as_option(declarations[key]) if key in declarations else None
        if option is None or option_problems(value, option):
            continue
        if option.table is not None:
            value = {**option.default, **{k: v for k, v in value.items() if k in option.table and not option_problems(v, as_option(option.table[k]))}}
        values[key] = value
    return values

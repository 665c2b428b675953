"""Option declarations: what values a setting accepts, checked before any work.

Every setting is declared with an :class:`Option`: the core's own keys
(:mod:`feph_finetune.config.schema`), each executor's (its ``options`` class attribute), each
plugin's (its ``plugin_options`` hook) and the demo's ``[demo]`` table. A declaration given as a
plain default accepts values of the default's type; an :class:`Option` adds the checks one would
otherwise write by hand and run only when a run starts: allowed choices, numeric ranges,
finiteness, a file that must exist, a free-form check. The core checks every configured value
against its declaration while it validates the configuration, so a wrong value stops
``--dry-run`` with exit code 2 instead of failing each run minutes later.

No TensorFlow here (the CLI validates configurations without it).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from feph_finetune.data.user_files import NO_SUCH_FILE, NO_SUCH_FOLDER, input_file_problem, input_folder_problem

#: What ``Option.path`` may ask for.
PATH_KINDS = ("file", "dir")


@dataclass(frozen=True)
class Option:
    """One setting: its default and what values it accepts.

    - ``default``: the value when the configuration does not set one; its type is the option's
      type (bool, int, float, str, a table (dict) or a list of those; an int is accepted for a
      float; None accepts any value unless ``kind`` says).
    - ``kind``: the type of the values (of a list option: of its items) when the default does
      not show it: a default of None (``seed``: unset means the matrix's) or an empty list
      (``augment = []`` takes strings).
    - ``keywords``: words accepted besides values of the option's type (``jobs = "auto"``).
    - ``table``: for a table option, the declarations of its keys (``[demo] base_epochs``),
      checked one by one like a section's; the default then holds the defaults of those given.
    - ``expects``: how messages describe the accepted values when the type alone says too
      little (``"GPU indices such as [0, 1]"``).
    - ``help``: one line for people reading ``plugin_options`` or an error message.
    - ``choices``: the only allowed values (for a list option: of each item).
    - ``minimum``/``maximum``: numeric bounds, inclusive unless ``exclusive_minimum`` /
      ``exclusive_maximum`` is True.
    - ``finite``: refuse ``inf`` and ``nan`` (TOML can write both); on by default.
    - ``path``: ``"file"`` or ``"dir"``: the value names one that must exist, relative to the
      current directory or absolute, ``~`` expanded. With ``choices`` too, a value is either one
      of the choices or such a path (``weights = "none"``, ``"imagenet"`` or a file).
    - ``suffixes``: with ``path``, the endings a path may have (case-insensitive).
    - ``retired``: former values, each with a hint of what to write instead.
    - ``check``: any further rule: a function of the value returning an error message, or None
      when the value is fine. It must not import TensorFlow or read large files. A plugin's or
      executor's check that raises (or returns anything else) is its failure, reported at the
      value's place (:func:`checked_as_owner`).
    - ``check_with_options``: a rule that involves the plugin's other options: a function of
      (value, options), ``options`` being all of the plugin's options with defaults filled in,
      returning an error message or None. Run only when every option passed its own checks, for
      the plugins an experiment uses, where files named by options are checked (not for files a
      command writes later). The same restrictions as ``check``.
    - ``unhashed_at_default``: an option added after results existed: at its default it is left
      out of the run id, so that those results keep their ids.
    - ``training_only``: the option shapes only what fine-tuning trains (a model plugin's new
      head: its ``dropout``, the ``cut_layer`` it is put on), not the pretrained classifier that
      a No-FT run (``fine_tune = false``) evaluates untrained. A No-FT run's id hashes it at its
      default, so that setting it does not split a No-FT configuration's runs (as the core's
      :data:`~feph_finetune.config.reading.TRAINING_ONLY_KEYS`), and a No-FT experiment that
      sets it is warned that its result does not depend on it (the plugin still receives it).
      Not for what No-FT's result depends on, however little: the weights, the input, the
      evaluation batch.
    """

    default: Any
    help: str = ""
    kind: type | None = None
    keywords: Sequence[str] = ()
    expects: str = ""
    table: Mapping[str, Any] | None = None
    choices: Sequence[Any] | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    finite: bool = True
    path: str | None = None
    suffixes: Sequence[str] = ()
    retired: Mapping[Any, str] = field(default_factory=dict)
    check: Callable[[Any], str | None] | None = None
    check_with_options: Callable[[Any, Mapping[str, Any]], str | None] | None = None
    unhashed_at_default: bool = False
    training_only: bool = False

    def __post_init__(self) -> None:
        if self.path is not None and self.path not in PATH_KINDS:
            raise ValueError(f"Option path must be one of {', '.join(PATH_KINDS)}, not {self.path!r}")
        problems = default_problems(self)
        if problems:
            raise ValueError(f"Option default {_shortened_repr(self.default)} does not fit its own declaration: {'; '.join(problems)}")


def default_problems(option: Option) -> list[str]:
    """Why ``option``'s own default is not a value it accepts (an empty list when it is): each
    item's choices, bounds, finiteness and retired values, checked as a configured value's are.
    Not checked: a default of None or a keyword (unset, ``"auto"``), the type (the default is what
    declares it; a plain list default may mix types), a ``path`` option's file (a text default is
    any path; ``""`` by convention means the user must give one) and the free-form ``check`` (it
    may read files, and refuses such a placeholder by design). Refused at construction, so that a
    plugin's ``plugin_options`` cannot declare ``Option(-5, minimum=0)``: its runs would be given
    a value their own plugin refuses."""
    default = option.default
    if default is None or (isinstance(default, str) and default in option.keywords):
        return []
    return [problem for item in (default if _is_list(default) else [default]) for problem in _item_problems(item, option, paths="ignore")]


def _shortened_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


#: A name a configuration can address: a TOML bare key, so that it can be one part of a dotted
#: key (``[experiments.A.options.PLUGIN]``), of a grid key (``"options.PLUGIN.OPTION"``, split at
#: its dots) and of ``--set experiments.A.options.PLUGIN.OPTION=1`` alike.
ADDRESSABLE_NAME = re.compile(r"[A-Za-z0-9_-]+", re.ASCII)


def name_problem(name: Any) -> str:
    """Why ``name`` (of a plugin or an option) cannot be addressed in a configuration ('' when it can)."""
    if not isinstance(name, str):
        return f"name {_shortened_repr(name)} is {type_name(name)}, not text"
    if not ADDRESSABLE_NAME.fullmatch(name):
        return f"{_shortened_repr(name)} cannot be written as a part of a TOML dotted key, a grid key or --set: use only ASCII letters, digits, '_' and '-'"
    return ""


def as_option(value: Any) -> Option:
    """A declaration from what ``plugin_options`` returned for one option (a default or an Option)."""
    return value if isinstance(value, Option) else Option(default=value)


def checked_as_owner(option: Option, owner: str, key: str) -> Option:
    """``option`` with its ``check`` and ``check_with_options`` called as ``owner``'s code
    (``"plugin 'x'"``): whatever every caller of the checks does, a check that fails (raises,
    ``sys.exit()`` included: :func:`~feph_finetune.plugins.is_plugin_failure`) or returns
    something other than a message or None gives the message "plugin 'x' failed checking
    option 'k': ZeroDivisionError: ...", a problem of the value's place like any other."""
    if option.table is not None:
        option = dataclasses.replace(option, table={name: checked_as_owner(as_option(value), owner, f"{key}.{name}") for name, value in option.table.items()})
    if option.check is None and option.check_with_options is None:
        return option
    return dataclasses.replace(
        option,
        check=None if option.check is None else _contained(option.check, owner, key),
        check_with_options=None if option.check_with_options is None else _contained(option.check_with_options, owner, key),
    )


def _contained(check: Callable[..., Any], owner: str, key: str) -> Callable[..., str | None]:
    """``check`` run as ``owner``'s code: its failure a message, its slowness and an interrupt
    naming it (:func:`~feph_finetune.plugins.named_while_slow`)."""
    what = f"{owner} failed checking option {key!r}"

    def contained(*arguments: Any) -> str | None:
        from feph_finetune.plugins import describe_error, is_plugin_failure, named_while_slow  # plugins imports this module

        try:
            with named_while_slow(f"checking option {key!r} of {owner}"):
                message = check(*arguments)
        except BaseException as error:
            if not is_plugin_failure(error):
                raise
            return f"{what}: {describe_error(error)}"
        if message is not None and not isinstance(message, str):
            return f"{what}: the check must return a message (str) or None, got {type(message).__name__}"
        return message

    return contained


def option_problems(value: Any, option: Option, check_paths: bool = True) -> list[str]:
    """Why ``value`` is not acceptable for ``option`` (an empty list when it is).

    ``check_paths=False`` skips the existence of ``path`` options, for files that are written
    later (the demo's base models). Messages describe the value only; the caller names the place.
    """
    if isinstance(value, str) and value in option.keywords:
        return []
    if not _matches(value, option):
        return [f"expected {expected_values(option)}, got {type_name(value)} {value!r}"]
    items = value if _is_list(value) else [value]
    problems: list[str] = []
    for item in items:
        problems += _item_problems(item, option, paths="exist" if check_paths else "suffix")
    if not problems and option.check is not None:
        message = option.check(value)
        if message:
            problems.append(message)
    return problems


def _matches(value: Any, option: Option) -> bool:
    return matches_type(value, _example(option))


def _example(option: Option) -> Any:
    """A value of the option's type: its default, or one of ``kind`` where the default does not
    show the type (None, an empty list)."""
    if option.kind is None or (option.default is not None and option.default != []):
        return option.default
    return [option.kind()] if _is_list(option.default) else option.kind()


def expected_values(option: Option) -> str:
    """What ``option`` accepts, in a message's words: its ``expects``, else its type's TOML name."""
    if option.expects:
        return option.expects
    example = _example(option)
    expected = f"array of {type_name(example[0])}s" if _is_list(example) and example else type_name(example)
    return " or ".join([expected, *(repr(word) for word in option.keywords)])


def describe(option: Option) -> str:
    """What ``option`` accepts, in one line, for listings (``plugins --settings``)."""
    parts = [expected_values(option)]
    if option.choices is not None:
        parts.append("one of " + ", ".join(repr(choice) for choice in option.choices))
    if option.minimum is not None:
        parts.append(f"{'>' if option.exclusive_minimum else '>='} {_number(option.minimum)}")
    if option.maximum is not None:
        parts.append(f"{'<' if option.exclusive_maximum else '<='} {_number(option.maximum)}")
    if option.path is not None:
        parts.append(f"an existing {option.path}" + (f" ({', '.join(option.suffixes)})" if option.suffixes else ""))
    return ", ".join(parts)


def _number(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


def _item_problems(item: Any, option: Option, paths: str) -> list[str]:
    """Why one value (of a list: one item) is not accepted; ``paths``: "exist" checks a path's
    ending and existence, "suffix" its ending only, "ignore" neither."""
    if _hashable(item) and item in option.retired:
        return [f"{item!r} is no longer accepted: {option.retired[item]}"]
    if option.path is not None and isinstance(item, str) and (option.choices is None or item not in option.choices):
        return [] if paths == "ignore" else _path_problems(item, option, check_paths=paths == "exist")
    if option.choices is not None and item not in option.choices:
        return [f"{item!r} is not one of {', '.join(repr(choice) for choice in option.choices)}{_close(item, option.choices)}"]
    if _is_number(item):
        return _number_problems(item, option)
    return []


def _number_problems(number: float, option: Option) -> list[str]:
    if option.finite and isinstance(number, float) and not math.isfinite(number):  # an int is finite (and may be too large for a float)
        return [f"must be a finite number, not {number!r}"]
    if option.minimum is not None:
        below = number <= option.minimum if option.exclusive_minimum else number < option.minimum
        if below:
            return [f"must be {'>' if option.exclusive_minimum else '>='} {option.minimum}, not {_shown(number)}"]
    if option.maximum is not None:
        above = number >= option.maximum if option.exclusive_maximum else number > option.maximum
        if above:
            return [f"must be {'<' if option.exclusive_maximum else '<='} {option.maximum}, not {_shown(number)}"]
    changed = float32_problem(number) if isinstance(number, float) or isinstance(_example(option), float) else None
    return [changed] if changed else []


def float32_problem(number: float) -> str | None:
    """Why a float setting's finite ``number`` means something else in float32, the precision
    training computes in (a learning rate of 5e-324 is 0 there, and nothing is learned), or None:
    a non-zero number that rounds to 0, or one that rounds to infinity."""
    if isinstance(number, float) and not math.isfinite(number):
        return None  # refused or allowed by ``finite``
    try:
        as_float32 = struct.unpack("f", struct.pack("f", float(number)))[0]
    except OverflowError:  # a float beyond float32's range, or an int beyond even float64's
        as_float32 = math.inf
    if math.isinf(as_float32):
        return f"{_shown(number)} is {'-' if number < 0 else ''}inf in float32, which training uses (the largest float32 is about 3.4e38)"
    if as_float32 == 0 and number != 0:
        return f"{_shown(number)} is 0 in float32, which training uses (the smallest non-zero float32 is about 1.4e-45)"
    return None


def _shown(number: float) -> str:
    """A number as a message quotes it: an integer of hundreds of digits by its length."""
    digits = digit_count(number) if isinstance(number, int) else 0
    return f"an integer of {digits} digits" if digits > 20 else repr(number)


def digit_count(number: int) -> int:
    """The decimal digits of ``number``'s magnitude, counted without ``str()`` (which refuses an
    int of more than ``sys.get_int_max_str_digits()`` digits)."""
    magnitude = abs(number)
    digits = max(1, int(magnitude.bit_length() * math.log10(2)))  # exact or one short
    return digits + 1 if magnitude >= 10**digits else digits


class LongInteger(int):
    """A decimal integer longer than Python turns into an int: a stand-in of the same sign and
    number of digits (so every range check refuses it as it would the number, and a message calls
    it "an integer of N digits"), written as the text it was read from."""

    def __new__(cls, text: str):
        digits = len(text.lstrip("+-"))
        stand_in = super().__new__(cls, -(10 ** (digits - 1)) if text.startswith("-") else 10 ** (digits - 1))
        stand_in.text = text
        return stand_in

    def __repr__(self) -> str:
        return self.text

    __str__ = __repr__


#: A decimal integer as :func:`integer` reads one: sign, leading zeros, digits (ASCII only).
_DECIMAL = re.compile(r"([+-]?)0*([0-9]+)", re.ASCII)


def integer(text: str) -> int:
    """``int(text)``, and a :class:`LongInteger` for a decimal integer longer than Python reads
    (``sys.get_int_max_str_digits()``, 4300 digits by default). ValueError when ``text`` is no
    integer. Named for argparse, whose message for a bad value is "invalid integer value: 'x'"."""
    try:
        return int(text)
    except ValueError:
        found = _DECIMAL.fullmatch(text.strip())
        if not found:
            raise
        sign, digits = found.groups()
        return LongInteger(sign + digits) if len(digits) > sys.get_int_max_str_digits() else int(sign + digits)


def _path_problems(text: str, option: Option, check_paths: bool) -> list[str]:
    if option.suffixes and not text.lower().endswith(tuple(suffix.lower() for suffix in option.suffixes)):
        kinds = f"a {option.path} ending in {', '.join(option.suffixes)}"
        allowed = f"neither one of {', '.join(repr(c) for c in option.choices)} nor {kinds}" if option.choices else f"not {kinds}"
        return [f"{text!r} is {allowed}{_close(text, option.choices or ())}" + (f" ({option.help})" if option.help else "")]
    if not check_paths:
        return []
    path = Path(text).expanduser()
    problem = input_file_problem(path) if option.path == "file" else input_folder_problem(path)
    if problem in (NO_SUCH_FILE, NO_SUCH_FOLDER):
        return [f"{problem}: {text!r} ({path.absolute()})"]
    return [f"{text!r}: {problem}"] if problem else []


# --- types (shared with the core's own keys) ----------------------------------------------------


def type_name(value: Any) -> str:
    """The TOML name of a value's type, for messages."""
    return {bool: "boolean", int: "integer", float: "float", str: "string", list: "array", dict: "table"}.get(
        type(value), type(value).__name__
    )


def matches_type(value: Any, default: Any) -> bool:
    """Whether ``value`` may replace ``default``: same type, an int for a float, anything for None."""
    if default is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, list):
        if not isinstance(value, list):
            return False
        return all(matches_type(item, default[0]) for item in value) if default else True
    return isinstance(value, type(default))


def as_declared(value: Any, option: Option) -> Any:
    """``value`` (which passed :func:`option_problems`) in its option's declared type: a whole
    number given to a float setting (``margin = 1``, ``validation_split = 0``) as that float
    (``1.0``, ``0.0``), and a float ``-0.0`` as ``0.0``, in a list and in a declared table too,
    so that a run, its id and a grid's repeated values see one value however it is written. Any
    other value is returned as it is (an int too large to be a float exactly, too)."""
    if option.table is not None and isinstance(value, dict):
        return {key: as_declared(item, as_option(option.table[key])) if key in option.table else item for key, item in value.items()}
    example = _example(option)
    if _is_list(value):
        item_option = Option(example[0] if _is_list(example) and example else None)
        return [as_declared(item, item_option) for item in value]
    if isinstance(value, float):
        return value + 0.0  # -0.0 as 0.0: the same number, so the same run and id
    if isinstance(example, float) and _is_number(value) and _exact_float(value):
        return float(value)
    return value


def _exact_float(number: int) -> bool:
    try:
        return float(number) == number
    except OverflowError:
        return False


def _is_list(value: Any) -> bool:
    return isinstance(value, list)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _close(word: Any, choices: Sequence[Any]) -> str:
    """A ' (did you mean X?)' hint for a misspelt choice, or an empty string."""
    if not isinstance(word, str):
        return ""
    texts = [choice for choice in choices if isinstance(choice, str)]
    matches = difflib.get_close_matches(word, texts, n=1, cutoff=0.6)
    return f" (did you mean {matches[0]!r}?)" if matches else ""

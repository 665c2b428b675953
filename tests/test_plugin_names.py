"""What a third-party plugin may be called and declare, and what its import may change: names a
configuration cannot address, case twins of built-ins, one module under two names, option
defaults outside their own declarations, and environment variables set at import."""

from __future__ import annotations

import os
import textwrap

import pytest

from feph_finetune.config.options import Option
from feph_finetune.plugins import PluginCallError, get_plugins

from conftest import write_matrix
from fake_store import write_fake_store
from test_hook_results import Declares
from test_plugins import GOOD_METRIC, cli_with, site, write_distribution  # noqa: F401 (site: a fixture)


def offer(site, name, entries, module="", body=""):
    """A distribution ``name`` 0.1 with the entry points ``{entry name: "module[:object]"}``,
    and a module ``module`` of ``body`` where given."""
    if module:
        (site / f"{module}.py").write_text(textwrap.dedent(body), encoding="utf-8")
    info = site / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text("[feph_finetune]\n" + "".join(f"{entry} = {target}\n" for entry, target in entries.items()), encoding="utf-8")


def entries_named(name):
    return [info for info in get_plugins().info() if info.name == name]


def dry_run(tmp_path, root, capsys, body):
    """``--dry-run`` of a matrix with ``body``, in this process: (exit code, stderr as one line)."""
    from feph_finetune.cli import main

    path = write_matrix(tmp_path / "m.toml", root, body)
    code = main([str(path), "--dry-run", "--output", str(tmp_path / "runs")])
    return code, " ".join(capsys.readouterr().err.split())


# --- plugin names ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["my.plug", "sp ace", "naïve"])
def test_an_entry_point_name_a_configuration_cannot_address_is_broken_naming_the_distribution(site, name):
    """"my.plug" was listed ok, usable in evaluate, but a grid key "options.my.plug.x" meant plugin 'my'."""
    write_distribution(site, entry=name, body=GOOD_METRIC)
    (entry,) = entries_named(name)
    assert entry.status == "broken" and name not in get_plugins().names()
    assert f"the entry point's name {name!r} cannot be written as a part of a TOML dotted key" in entry.error
    assert entry.error.endswith("rename it in feph-extra") and "\n" not in entry.error


def test_a_configuration_naming_an_unaddressable_plugin_is_told_why(site, tmp_path, synthetic_feph, capsys):
    write_distribution(site, entry="my.plug", body=GOOD_METRIC)
    code, message = dry_run(tmp_path, synthetic_feph, capsys, '[experiments.A]\nevaluate = ["paper_metrics", "my.plug"]\n')
    assert code == 2 and "plugin 'my.plug' of feph-extra 1.2.3 is broken" in message and "rename it in feph-extra" in message


@pytest.mark.parametrize("name,builtin", [("Flip", "flip"), ("Paper_Metrics", "paper_metrics"), ("FLIP", "flip")])
def test_a_case_twin_of_a_builtin_is_refused_like_a_replacement(site, name, builtin):
    write_distribution(site, entry=name, body=GOOD_METRIC)
    (entry,) = entries_named(name)
    assert entry.status == "refused" and name not in get_plugins().names() and builtin in get_plugins().names()
    assert f"may not take the name of the built-in {builtin!r} in other letter case" in entry.error
    assert any(f"plugin {name!r} of feph-extra 1.2.3 is ignored" in warning for warning in get_plugins().warnings)


def test_two_third_party_names_differing_in_case_are_both_in_conflict(site):
    offer(site, "feph-one", {"kappa": "feph_one_metric"}, "feph_one_metric", GOOD_METRIC)
    offer(site, "feph-two", {"Kappa": "feph_two_metric"}, "feph_two_metric", GOOD_METRIC)
    (lower,), (upper,) = entries_named("kappa"), entries_named("Kappa")
    assert lower.status == upper.status == "conflict"
    # both distributions named, one with its spelling; which comes first follows the order the entry points are found in
    assert "feph-one 0.1" in lower.error and "feph-two 0.1" in lower.error and ("(as 'Kappa')" in lower.error or "(as 'kappa')" in lower.error)
    assert not {"kappa", "Kappa"} & set(get_plugins().names())


# --- one module under two names ---------------------------------------------------------------


def test_one_module_under_two_entry_points_is_loaded_once_and_the_other_named_in_one_line(site):
    """The second was broken with pluggy's message: the whole registry, ~20 lines of module reprs."""
    offer(site, "feph-twice", {"first": "feph_twice_metric", "second": "feph_twice_metric"}, "feph_twice_metric", GOOD_METRIC)
    (first,), (second,) = entries_named("first"), entries_named("second")
    assert first.status == "ok" and second.status == "broken"
    assert second.error == "module feph_twice_metric is already loaded as plugin 'first'; a plugin has one name: remove this entry point from feph-twice"


def test_a_builtin_module_offered_under_another_name_is_named_as_that_builtin(site):
    offer(site, "feph-again", {"my_flip": "feph_finetune_plugins.flip"})
    (entry,) = entries_named("my_flip")
    assert entry.status == "broken" and entry.error.startswith("module feph_finetune_plugins.flip is already loaded as plugin 'flip';")


# --- option declarations ----------------------------------------------------------------------


@pytest.mark.parametrize("declaration,said", [
    ("Option(-5, minimum=0)", "must be >= 0, not -5"),
    ("Option(1.0, maximum=1.0, exclusive_maximum=True)", "must be < 1.0, not 1.0"),
    ("Option(['a', 'z'], choices=('a', 'b'))", "'z' is not one of 'a', 'b'"),
    ("Option('c', choices=('a', 'b'))", "'c' is not one of 'a', 'b'"),
    ("Option('old', retired={'old': 'write new'})", "'old' is no longer accepted: write new"),
])
def test_an_option_default_outside_its_own_declaration_makes_the_plugin_broken(site, declaration, said):
    write_distribution(site, body=f"""
        from feph_finetune import Option, hookimpl

        @hookimpl
        def plugin_options():
            return {{"x": {declaration}}}

        @hookimpl
        def evaluate(y_true, y_prob):
            return {{}}
    """)
    (entry,) = entries_named("extra_metric")
    assert entry.status == "broken" and "plugin_options() failed: ValueError: Option default" in entry.error
    assert f"does not fit its own declaration: {said}" in entry.error


def test_defaults_that_mean_unset_or_must_be_given_stay_accepted():
    """None is unset (``seed``); a path option's "" means the user must give the file (``keras_model``)."""
    assert Option(None, kind=int, minimum=1).default is None
    assert Option("", path="file", suffixes=(".keras",), check=lambda value: "must be given").default == ""
    assert Option("auto", keywords=("auto",), minimum=1).default == "auto"




@pytest.mark.parametrize("name", ["a.b", "", " sp", "é", 1])
def test_an_option_name_a_configuration_cannot_address_is_the_plugins_failure(name):
    plugins = get_plugins()
    plugins.pm.register(Declares({name: 1}), name="odd")
    with pytest.raises(PluginCallError) as failed:
        plugins.option_declarations("odd")
    assert "must return option names that a configuration can address: option" in str(failed.value)
    assert (f"{name!r} cannot be written" if isinstance(name, str) else "name 1 is integer, not text") in str(failed.value)


def test_an_entry_point_declaring_an_unaddressable_option_is_listed_broken(site):
    write_distribution(site, body='from feph_finetune import hookimpl\n\n@hookimpl\ndef plugin_options():\n    return {"a.b": 1}\n')
    (entry,) = entries_named("extra_metric")
    assert entry.status == "broken" and "option 'a.b' cannot be written as a part of a TOML dotted key" in entry.error


# --- the environment at import ----------------------------------------------------------------


def test_environment_variables_changed_at_import_are_restored_with_one_warning(site, monkeypatch):
    """FEPH_FINETUNE_CACHE set by one plugin's import silently moved the matrix's crop cache."""
    monkeypatch.delenv("FEPH_FINETUNE_CACHE", raising=False)
    monkeypatch.setenv("PLUGLOAD_CHANGED", "before")
    monkeypatch.setenv("PLUGLOAD_REMOVED", "kept")
    write_distribution(site, entry="mover", body="""
        import os
        os.environ["FEPH_FINETUNE_CACHE"] = "/secret/x"
        os.environ["PLUGLOAD_CHANGED"] = "after"
        del os.environ["PLUGLOAD_REMOVED"]
    """)
    warnings = [warning for warning in get_plugins().warnings if "environment" in warning]
    assert "mover" in get_plugins().names()
    assert "FEPH_FINETUNE_CACHE" not in os.environ and os.environ["PLUGLOAD_CHANGED"] == "before" and os.environ["PLUGLOAD_REMOVED"] == "kept"
    assert warnings == ["plugin 'mover' changed environment variables while imported (set FEPH_FINETUNE_CACHE; changed PLUGLOAD_CHANGED; "
                        "removed PLUGLOAD_REMOVED); changed back: set them in the hook that needs them"]


def test_the_environment_warning_is_shown_by_commands(site):
    write_distribution(site, entry="mover", body='import os\nos.environ["FEPH_FINETUNE_CACHE"] = "/x"\n')
    listing = cli_with(site, "plugins")
    assert listing.returncode == 0
    said = " ".join(listing.stderr.split())  # run_cli sets the cache: "changed", not "set"
    assert "warning: plugin 'mover' changed environment variables while imported (changed FEPH_FINETUNE_CACHE); changed back" in said


#: A command of each kind that imports the plugins, with what it needs (a results folder, data).
PLUGIN_COMMANDS = {
    "plugins": lambda out, data: ["plugins"],
    "data": lambda out, data: ["data", str(data)],
    "report": lambda out, data: ["report", str(out)],
    "predict": lambda out, data: ["predict", str(out / "no-model"), str(data)],
    "matrix": lambda out, data: [str(write_matrix(out.parent / "m.toml", data, '[experiments.B]\nevaluate = ["paper_metrics"]\n')), "--dry-run"],
}


@pytest.mark.parametrize("command", list(PLUGIN_COMMANDS))
def test_every_command_says_what_a_plugins_import_changed_and_was_changed_back(site, tmp_path, synthetic_feph, command):
    """``report`` (and ``data``, ``predict``) took the registry without its warnings: a plugin's
    import-time ``os.chdir`` and ``os.environ`` changes were undone without a word."""
    write_distribution(site, entry="mover", body=f'import os\nos.chdir({str(tmp_path)!r})\nos.environ["FEPH_FINETUNE_CACHE"] = "/x"\n')
    write_fake_store(tmp_path / "out")
    said = " ".join(cli_with(site, *PLUGIN_COMMANDS[command](tmp_path / "out", synthetic_feph)).stderr.split())
    assert "warning: plugin 'mover' changed the working directory to" in said
    assert "warning: plugin 'mover' changed environment variables while imported (changed FEPH_FINETUNE_CACHE); changed back" in said

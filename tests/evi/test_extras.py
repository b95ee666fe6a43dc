"""evi/extras.py against pyproject.toml: each extra's module list names exactly the modules its
distributions provide, every command that imports a service's heavy packages is listed, and in
this venv (every extra installed) no command is refused. The refusal itself runs for real in a
core-only venv (tests/deploy/test_wheel_install.py)."""

from __future__ import annotations

import sys
from importlib.metadata import packages_distributions

import pytest
from packaging.utils import canonicalize_name

from evi.cli import SERVICES
from evi.extras import EXTRAS, NEEDS, install_hint, missing_modules, problem
from tests.deploy.pyproject import names, wanted


def test_each_extras_modules_are_what_its_distributions_provide() -> None:
    provides: dict[str, set[str]] = {}
    for module, dists in packages_distributions().items():
        for d in dists:
            provides.setdefault(str(canonicalize_name(d)), set()).add(module)
    for extra, modules in EXTRAS.items():
        own = names(wanted(extra)) - names(wanted())  # the extra's own, not the core's
        from_dists = {m for d in own for m in provides.get(d, set())}
        assert set(modules) <= from_dists, f"{extra}: {set(modules) - from_dists} from elsewhere"
        for d in own:  # each distribution of the extra is checked through one of its modules
            assert provides.get(d, set()) & set(modules), f"{extra}: nothing checks {d}"


def test_the_commands_of_each_service_need_its_extra() -> None:
    assert set(NEEDS) <= set(SERVICES)
    for command, (module, _, _) in SERVICES.items():
        service = module.split(".")[0]
        by_service: dict[str, tuple[str, ...]] = {"processors": ("processor",),
                                                  "producers": ("producer",)}
        expected = ("processor", "producer") if command == "dev" else by_service.get(service, ())
        assert NEEDS.get(command, ()) == expected, command


@pytest.mark.parametrize("command", sorted(SERVICES))
def test_nothing_is_refused_where_every_extra_is_installed(command: str) -> None:
    assert problem(command) is None


def test_the_hint_is_a_pip_command_for_the_extras() -> None:
    assert install_hint(("processor",)) == "pip install 'evi[processor]'"
    assert install_hint(("processor", "producer")) == "pip install 'evi[processor,producer]'"


def test_an_imported_module_without_a_spec_counts_as_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # faust replaces itself in sys.modules with a lazy module whose __spec__ is None, which
    # makes importlib.util.find_spec raise ValueError once faust is imported.
    import types

    lazy = types.ModuleType("faust")
    lazy.__spec__ = None
    monkeypatch.setitem(sys.modules, "faust", lazy)
    assert "faust" not in missing_modules("processor")

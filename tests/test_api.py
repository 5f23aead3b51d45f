"""The public API shows real signatures (editors and `help()` see every option), and each
wrapper offers exactly what the core function behind it takes."""

from __future__ import annotations

import inspect

import pytest

import cellops

# options of the core a notebook never passes: the store is the session's, and registration's
# attachments are built by the wrapper from `reference=`
INTERNAL = {"store", "attachments"}


def _core(name: str):
    if name == "register_model":
        from cellops.registry.register import register_model

        return register_model
    if name == "promote":
        from cellops.registry.promote import promote

        return promote
    from cellops.monitoring.api import drift

    return drift


@pytest.mark.parametrize("name", ["register_model", "promote", "drift"])
def test_public_functions_have_full_signatures_matching_the_core(name: str) -> None:
    public = inspect.signature(getattr(cellops, name)).parameters
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in public.values())
    core = inspect.signature(_core(name)).parameters
    core_names = set(core) - INTERNAL
    if name == "register_model":
        core_names |= {"reference"}  # the wrapper turns it into the core's attachments
    assert set(public) == core_names
    for option, parameter in public.items():
        if option in core and core[option].default is not inspect.Parameter.empty:
            assert parameter.default == core[option].default, option

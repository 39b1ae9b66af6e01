"""The emulator's answer to "what firmware does this model's core offer?" (luatos_common.apilint).

Registered as the ``luatos.api_surface`` entry point, so ``luatos-pack`` lints against the
same per-model API lists (``ModelProfile.api``) the emulator's bindings install, without
importing the emulator.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .profiles import get_profile


@dataclass(frozen=True)
class EmulatedSurface:
    """A model profile's firmware API."""

    model: str
    core: str
    functions: Mapping[str, frozenset[str]]

    def has_module(self, module: str) -> bool:
        return module in self.functions

    def has_function(self, module: str, function: str) -> bool:
        return function in self.functions.get(module, frozenset())


def surface_for(model: str) -> EmulatedSurface:
    """The API surface of ``model`` (raises ValueError for a model without a profile)."""
    profile = get_profile(model)
    return EmulatedSurface(profile.model, profile.core, profile.api)

"""The plugin's own tests drive inner pytest runs through ``pytester``.

``pytest_plugins = ["pytester"]`` is refused in a conftest below the rootdir when the whole
suite runs, so the plugin is registered here, once, when this conftest is configured.
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin("pytester"):
        config.pluginmanager.import_plugin("pytester")

"""pytest plugin for LuatOS projects (registered through the ``pytest11`` entry point)."""

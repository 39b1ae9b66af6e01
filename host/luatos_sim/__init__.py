"""LuatOS emulator: run a LuatOS project on a laptop in virtual time."""

"""Self-hosted FOTA server speaking what LuatOS libfota2 sends."""

"""The test harness for LuatOS projects: the pytest plugin, the device-under-test API.

The same ``dut`` test runs on the emulator (``luatos_sim``) and on a board over a serial port
(``luatos_tools.serial_log``), next to a real FOTA server (``luatos_fota``). The harness is its
own package because it is the one place those three meet: the emulator imports neither the
server nor the hardware tools.
"""

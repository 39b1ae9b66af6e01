"""Types shared by the emulator, the FOTA server and the hardware tools.

The emulator, the serial tail and the server must agree on what a log line, a version or a
package is; each of those is defined once, here.
"""

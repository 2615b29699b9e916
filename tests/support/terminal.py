"""Run a command on a pseudo-terminal of a given width, as a person at a terminal would
see its output (``rich`` sizes tables to the terminal it finds)."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import termios


def run_on_tty(args: list[str], *, columns: int, env: dict[str, str] | None = None,
               timeout: float = 60) -> tuple[int, str]:
    """``(exit code, output)`` of ``args`` run with stdin, stdout and stderr on a pty
    ``columns`` wide (no colours; ``COLUMNS``/``LINES`` unset, so the width is the
    terminal's). Lines end in ``\\r\\n`` as a terminal gets them; the output has them
    as ``\\n``."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    full = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    full.update({"TERM": "xterm", "NO_COLOR": "1", **(env or {})})
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=full,
                            close_fds=True)
    os.close(slave)
    out = bytearray()
    try:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the other side closed
                break
            if not chunk:
                break
            out += chunk
        code = proc.wait(timeout=timeout)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return code, out.decode(errors="replace").replace("\r\n", "\n")


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def visible(out: str) -> str:
    """``out`` as it shows on the screen's cells: ANSI escape sequences (bold, cursor
    moves) removed."""
    return _ANSI.sub("", out)

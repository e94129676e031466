"""What a run records of where it ran: versions, the device, the git commit, the command line."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path
from typing import Any

from robustbench_mixup import __version__


def environment(device: str, argv: list[str] | None = None) -> dict[str, Any]:
    """Provenance recorded with every run: versions, device, git commit and dirty flag (when available), command."""
    import torch

    env: dict[str, Any] = {
        "package_version": __version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "device": device,
        "argv": list(argv) if argv is not None else None,
    }
    if device.startswith("cuda"):
        env["device_name"] = torch.cuda.get_device_name()
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
        env["git_commit"] = out.stdout.strip() if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        env["git_commit"] = None
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
        env["git_dirty"] = bool(out.stdout.strip()) if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        env["git_dirty"] = None
    return env

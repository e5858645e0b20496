"""Where the GPU tests leave their figures: GPU_RESULTS_DIR/<name>.json, when that variable is set."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def save_result(name: str, data: dict[str, Any]) -> None:
    folder = os.environ.get("GPU_RESULTS_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / f"{name}.json").write_text(json.dumps(data, indent=2, default=str))

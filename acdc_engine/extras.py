"""Optional dependencies: imported when a feature needs them, with an error naming the extra.

    mlflow = require("mlflow", "tracking", "tracking runs (or pass --no-track)")

Extras (``pip install 'acdc-engine[NAME]'``; ``all`` installs every one): ``tracking`` (mlflow),
``search`` (optuna), ``render`` (matplotlib).
"""

from __future__ import annotations

import importlib

from .errors import AcdcError

__all__ = ["require"]


def require(module: str, extra: str, purpose: str):
    """Import ``module`` or raise an AcdcError saying which extra provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise AcdcError(f"{purpose} needs {module.split('.')[0]}, which is not installed: "
                        f"pip install 'acdc-engine[{extra}]' ({e})") from None

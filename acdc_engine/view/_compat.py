"""Making the web stack importable next to nnsight.

nnsight (0.8) mounts a ``save`` method on ``object`` when it is imported. anyio (which Starlette
and uvicorn run on) checks, whenever one of its ``TypedAttributeSet`` classes is defined, that
every public attribute is annotated, and anyio 4.16 defines most of them lazily (on first use),
so after nnsight's import they fail with "Attribute 'save' is missing its type annotation".
:func:`warm_anyio` imports all of anyio's modules now, with the mount taken off for the duration
when nnsight is already loaded, and puts it back.
"""

from __future__ import annotations

import importlib
import pkgutil

__all__ = ["warm_anyio"]

_done = False


def _import_all() -> None:
    import anyio

    for info in pkgutil.walk_packages(anyio.__path__, "anyio."):
        if "trio" in info.name or "pytest" in info.name:
            continue  # optional backends and plugins with their own dependencies
        try:
            importlib.import_module(info.name)
        except ImportError:
            continue


def warm_anyio() -> None:
    """Import every anyio module while ``object`` has no mounted ``save`` (once)."""
    global _done
    if _done:
        return
    try:
        import anyio  # noqa: F401
    except ImportError:
        return
    mounted = object.__dict__.get("save")
    if mounted is None:
        _import_all()
    else:
        from nnsight._c import mount, unmount

        unmount("save")
        try:
            _import_all()
        finally:
            mount(mounted, "save")
    _done = True

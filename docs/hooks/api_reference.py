"""The API reference, generated at build time: one page per public subpackage of acdc_engine.

mkdocs runs this file as a hook (``hooks:`` in mkdocs.yml). It reads the package statically
with griffe (nothing is imported but ``acdc_engine/__init__.py``, which is lazy) and writes, for
every public module (no part of its dotted path starts with ``_``), the names of its ``__all__``:

- a name defined in the module is rendered there by mkdocstrings (its docstring, signature,
  members);
- a name the module re-exports links to the place it is rendered (``[name][dotted.path]``; a
  reference that does not resolve fails ``mkdocs build --strict``), or is rendered in place when
  it is defined somewhere private.

So every public name is documented exactly once, and a module added to the package appears
without anyone editing a list. ``tests/docs/test_docstrings.py`` uses :func:`public_names` to
fail when one of those names has no docstring.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = "acdc_engine"
ROOT = Path(__file__).resolve().parents[2]   # the repository
API_DIR = "api"
INDEX_TITLE = "Overview"
GUIDES = "Guides"   # the navigation section that takes pages missing from it


# ----- reading the package ------------------------------------------------------------------------
def load_package():
    """The package as griffe sees it (static analysis, aliases resolved inside the package)."""
    import griffe

    return griffe.load(PACKAGE, search_paths=[str(ROOT)], resolve_aliases=True,
                       resolve_external=False)


def is_public(path: str) -> bool:
    return not any(part.startswith("_") for part in path.split("."))


def public_modules(pkg) -> list:
    """Every public module of the package, the package first, in dotted-path order."""
    out = []

    def walk(mod):
        if is_public(mod.path):
            out.append(mod)
        for m in mod.modules.values():
            if not m.is_alias:
                walk(m)

    walk(pkg)
    return sorted(out, key=lambda m: (m.path != PACKAGE, m.path))


def _static_all(path: Path) -> list[str] | None:
    """``__all__`` of a source file, when it is a literal list or tuple of strings."""
    tree = ast.parse(path.read_text())
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AnnAssign) else [])
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                return None
            return [v for v in value if isinstance(v, str)]
    return None


def exports(mod) -> list[str]:
    """The module's ``__all__``. The package's own is built from its lazy-import table
    (``_LAZY``), read from the source without importing anything."""
    if mod.path == PACKAGE:
        lazy = ast.literal_eval(str(mod.members["_LAZY"].value))   # name -> module, as in __init__
        return [*lazy, "__version__"]
    if mod.filepath is None:
        return []
    names = _static_all(Path(mod.filepath))
    if names is None:
        names = [e for e in (mod.exports or []) if isinstance(e, str)]
    return list(dict.fromkeys(names))


def target_of(mod, name: str) -> str:
    """Dotted path of what ``mod.name`` is, following imports (a submodule that shares its
    name with a function the package imports, ``api.discover``, counts as the function)."""
    if mod.path == PACKAGE and name != "__version__":
        lazy = ast.literal_eval(str(mod.members["_LAZY"].value))
        return target_of(mod.modules_collection[f"{PACKAGE}.{lazy[name]}"], name)
    if name in mod.imports:
        return mod.imports[name]
    member = mod.members.get(name)
    if member is not None and member.is_alias:
        return member.target_path
    return f"{mod.path}.{name}"


def resolve(pkg, path: str, _seen=None):
    """``(canonical path, griffe object or None)`` for a dotted path inside the package,
    following re-exports until the object's own definition."""
    seen = _seen or set()
    if path in seen or not (path == PACKAGE or path.startswith(PACKAGE + ".")):
        return path, None
    seen.add(path)
    parts = path.split(".")
    mods = pkg.modules_collection
    for i in range(len(parts), 0, -1):
        try:
            mod = mods[".".join(parts[:i])]
        except KeyError:
            continue
        if not mod.is_module or mod.is_alias:
            continue
        obj, rest = mod, parts[i:]
        for j, part in enumerate(rest):
            if obj.is_module and part in obj.imports:
                return resolve(pkg, ".".join([obj.imports[part], *rest[j + 1:]]), seen)
            member = obj.members.get(part)
            if member is None:
                return path, None
            if member.is_alias:
                return resolve(pkg, ".".join([member.target_path, *rest[j + 1:]]), seen)
            obj = member
        return obj.path, obj
    return path, None


@dataclass
class PublicName:
    """One name of a public module's ``__all__``: where it is exported and where defined."""

    module: str
    name: str
    canonical: str
    obj: object = field(repr=False, default=None)

    @property
    def path(self) -> str:
        return f"{self.module}.{self.name}"

    @property
    def defined_here(self) -> bool:
        return self.canonical == self.path

    @property
    def docstring(self) -> str:
        doc = getattr(self.obj, "docstring", None)
        return doc.value.strip() if doc is not None and doc.value else ""


def public_names(pkg=None) -> list[PublicName]:
    """Every name in ``__all__`` of every public module, with its canonical definition."""
    pkg = pkg or load_package()
    out = []
    for mod in public_modules(pkg):
        for name in exports(mod):
            canonical, obj = resolve(pkg, target_of(mod, name))
            out.append(PublicName(mod.path, name, canonical, obj))
    return out


def _first_line(doc: str) -> str:
    """The docstring's first sentence or line, for a one-line summary."""
    text = " ".join(doc.strip().split("\n\n")[0].split())
    end = text.find(". ")
    return text[: end + 1] if end != -1 else text


# ----- writing the pages --------------------------------------------------------------------------
def page_of(module: str) -> str:
    """The page (relative to docs/) that documents ``module``: one per top-level subpackage or
    module, the package itself on the overview page."""
    parts = module.split(".")
    return f"{API_DIR}/index.md" if len(parts) == 1 else f"{API_DIR}/{parts[1]}.md"


def pages(pkg=None) -> dict[str, str]:
    """``{page path: markdown}`` for the whole reference."""
    pkg = pkg or load_package()
    names = public_names(pkg)
    rendered = {n.canonical for n in names if n.defined_here and n.obj is not None}
    by_module: dict[str, list[PublicName]] = {}
    for n in names:
        by_module.setdefault(n.module, []).append(n)
    texts: dict[str, list[str]] = {}
    for mod in public_modules(pkg):
        page = page_of(mod.path)
        lines = texts.setdefault(page, [])
        if not lines:
            title = "API reference" if page.endswith("index.md") else f"`{mod.path}`"
            lines += [f"# {title}", ""]
            if page.endswith("index.md"):
                lines += [
                    "Every public name of `acdc_engine` and of its public subpackages and "
                    "modules (the names in their `__all__`), with its docstring. A name is "
                    "documented where it is defined; the modules that re-export it link there. "
                    "These pages are generated from the source when the site is built "
                    "(`docs/hooks/api_reference.py`).", ""]
        own = [n for n in by_module.get(mod.path, []) if n.defined_here and n.obj is not None]
        here_too = [n for n in by_module.get(mod.path, [])
                    if not n.defined_here and n.canonical not in rendered
                    and n.name not in mod.modules and n.obj is not None]
        links = [n for n in by_module.get(mod.path, []) if n not in own and n not in here_too]
        lines += [f"## `{mod.path}`", ""]
        members = [n.name for n in own + here_too]
        lines += [f"::: {mod.path}", "    options:", "      show_root_heading: false",
                  "      show_root_toc_entry: false",
                  f"      members: [{', '.join(repr(m) for m in members)}]" if members
                  else "      members: false", ""]
        if links:
            lines += ["Re-exported here:", ""]
            for n in links:
                gist = f": {_first_line(n.docstring)}" if n.docstring else ""
                if n.canonical in rendered:
                    lines.append(f"- [`{n.name}`][{n.canonical}] (`{n.canonical}`){gist}")
                else:
                    lines.append(f"- `{n.name}` (`{n.canonical}`){gist}")
            lines.append("")
    index = texts[f"{API_DIR}/index.md"]
    index += ["## Subpackages and modules", ""]
    for mod in public_modules(pkg):
        if mod.path.count(".") == 1:
            doc = mod.docstring.value if mod.docstring else ""
            gist = f": {_first_line(doc)}" if doc else ""
            index.append(f"- [`{mod.path}`]({Path(page_of(mod.path)).name}){gist}")
    index.append("")
    order = [f"{API_DIR}/index.md"] + sorted(p for p in texts if not p.endswith("index.md"))
    return {p: "\n".join(texts[p]) + "\n" for p in order if p in texts}


def nav(page_paths) -> list:
    """The reference's part of the navigation."""
    items = []
    for p in page_paths:
        stem = Path(p).stem
        items.append({INDEX_TITLE if stem == "index" else f"{PACKAGE}.{stem}": p})
    return items


# ----- mkdocs events ----------------------------------------------------------------------------
_PAGES: dict[str, str] = {}


def on_config(config, **kwargs):
    _PAGES.clear()
    _PAGES.update(pages())
    reference = nav(_PAGES)
    for i, entry in enumerate(config.nav or []):
        if isinstance(entry, dict) and "API reference" in entry:
            config.nav[i] = {"API reference": reference}
            break
    else:
        if config.nav is not None:
            config.nav.append({"API reference": reference})
    return config


def _nav_paths(items) -> set[str]:
    out = set()
    for item in items or []:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        if isinstance(value, list):
            out |= _nav_paths(value)
        elif isinstance(value, str):
            out.add(value)
    return out


def on_files(files, config, **kwargs):
    """Add the reference's pages; a guide added to docs/ without a place in the navigation
    joins the guides (under its own title) instead of being left out of the site."""
    from mkdocs.structure.files import File

    for path, text in _PAGES.items():
        existing = files.get_file_from_path(path)
        if existing is not None:
            files.remove(existing)
        files.append(File.generated(config, path, content=text))
    listed = _nav_paths(config.nav)
    for entry in config.nav or []:
        if isinstance(entry, dict) and isinstance(entry.get(GUIDES), list):
            for f in files.documentation_pages():
                if "/" not in f.src_uri and f.src_uri not in listed:
                    entry[GUIDES].append(f.src_uri)
    return files


_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj|ref):(?=<code>)")
_TILDE = re.compile(r"<code>~(?:[\w]+\.)*([\w]+)</code>")


def on_page_content(html, page, **kwargs):
    """Docstrings are written in reST roles (``:class:`~x.Y` ``); show them as plain code."""
    if not page.file.src_uri.startswith(f"{API_DIR}/"):
        return html
    return _TILDE.sub(r"<code>\1</code>", _ROLE.sub("", html))


def main() -> int:
    for path, text in pages().items():
        print(f"----- {path}\n{text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

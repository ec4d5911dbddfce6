"""The test tree itself: every test file's name is unique."""

from pathlib import Path


def test_test_files_have_unique_names():
    """pytest imports test files by basename (the test folders are not packages): two files
    with one name stop the whole run at collection."""
    root = Path(__file__).resolve().parents[2]
    seen = {}
    for path in sorted((root / "tests").rglob("test_*.py")):
        seen.setdefault(path.name, []).append(str(path.relative_to(root)))
    twice = {name: paths for name, paths in seen.items() if len(paths) > 1}
    assert not twice, f"test files share a name: {twice}"

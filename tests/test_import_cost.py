"""%load_ext session_magics stays cheap: no heavy module is imported until a magic needs it."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

from tests.servers import python_json

REPO = Path(__file__).resolve().parent.parent
HEAVY = (
    "requests",
    "urllib3",
    "keyring",
    "ipywidgets",
    "pandas",
    "numpy",
    "jmespath",
    "tqdm",
    "jwt",
    "filelock",
    "session_magics.oauth",  # OAuth logins load when a profile uses them
    "http.server",
)

PROBE = textwrap.dedent(
    """
    import json, sys
    from IPython.core.interactiveshell import InteractiveShell

    heavy = json.loads(sys.argv[1])
    ip = InteractiveShell.instance()
    before = sorted(m for m in heavy if m in sys.modules)
    ip.run_line_magic("load_ext", "session_magics")
    assert "api" in ip.magics_manager.magics["cell"], "the magics were not registered"
    after = sorted(m for m in heavy if m in sys.modules)
    ip.run_cell("%%api --all --df\\nGET /x")  # fails (no profile) but parses: still nothing heavy
    used = sorted(m for m in heavy if m in sys.modules)
    print(json.dumps({"before": before, "after": after, "used": used}))
    """
)


def probe(cwd: Path) -> dict[str, list[str]]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["XDG_CONFIG_HOME"] = str(cwd / "xdg")
    return dict(python_json(PROBE, json.dumps(HEAVY), cwd=cwd, env=env))


def test_load_ext_imports_nothing_heavy(tmp_path):
    got = probe(tmp_path)
    assert got["before"] == []  # IPython alone does not import them either
    assert got["after"] == [], f"%load_ext session_magics imported {got['after']}"
    assert got["used"] == [], f"parsing a cell imported {got['used']}"


def test_load_ext_with_a_project_config_imports_nothing_heavy(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.session_magics]\ntimeout = 5\n\n[tool.session_magics.profiles.p]\nbase_url = "https://x.example"\n'
    )
    xdg = tmp_path / "xdg" / "session-magics"
    xdg.mkdir(parents=True)
    (xdg / "config.toml").write_text("leeway = 10\n")
    got = probe(tmp_path)
    assert got["after"] == [] and got["used"] == []

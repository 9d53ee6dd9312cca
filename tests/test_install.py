"""scripts/install.sh hands pip's source builds a matplotlib config they can find."""
import configparser
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("venv", ["rel/.venv", "../up/.venv", "ABS"])
def test_matplotlib_build_config_is_found_from_the_build_folder(tmp_path, venv):
    caller = tmp_path / "caller"
    caller.mkdir()
    if venv == "ABS":
        venv = str(tmp_path / "abs" / ".venv")
    env = {**os.environ, "VENV": venv}
    run = subprocess.run([str(REPO / "scripts" / "install.sh"), "--build-config-only"], cwd=caller, env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    name, _, path = run.stdout.strip().partition("=")
    assert name == "MPLSETUPCFG"
    assert Path(path) == (caller / venv).resolve() / "mplsetup.cfg"

    # pip runs matplotlib's setup.py in a temporary folder of its own; setupext reads the file the
    # same way (configparser on the MPLSETUPCFG path), so read it from a folder that is neither.
    build_folder = tmp_path / "pip-build"
    build_folder.mkdir()
    here = os.getcwd()
    os.chdir(build_folder)
    try:
        config = configparser.ConfigParser()
        assert config.read(path) == [path]
    finally:
        os.chdir(here)
    assert config.getboolean("libs", "system_freetype") and config.getboolean("libs", "system_qhull")

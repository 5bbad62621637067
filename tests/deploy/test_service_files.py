"""The service files of deploy/: the systemd unit written by the documented install command and
checked by systemd-analyze, and the Termux start script, installed and run for real."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNIT = "autobyteus-persistence.service"
VENV = Path(sys.executable).parent.parent


def install_unit(root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(DEPLOY / "install.sh"), "--root", str(root), "--no-user", "--no-venv",
         "--no-start", "--venv", str(VENV), *extra],
        capture_output=True, text=True, timeout=60)


def unit_settings(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


def test_the_installer_writes_the_unit_and_the_settings_file(tmp_path: Path) -> None:
    done = install_unit(tmp_path, "--user", "kv", "--data-dir", "/var/lib/kv-data")
    assert done.returncode == 0, done.stderr
    unit = tmp_path / "etc/systemd/system" / UNIT
    s = unit_settings(unit)
    assert "@" not in unit.read_text().replace("@system-service", "").replace("@privileged", "")
    assert s["User"] == ["kv"] and s["Group"] == ["kv"]
    assert s["ExecStart"] == [f"{VENV}/bin/autobyteus-server"]
    assert "AUTOBYTEUS_DATA_DIR=/var/lib/kv-data" in s["Environment"]
    assert s["StateDirectory"] == ["kv-data"] and s["ReadWritePaths"] == ["/var/lib/kv-data"]
    assert s["Restart"] == ["on-failure"]
    for hardening in ("NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp",
                      "CapabilityBoundingSet", "SystemCallFilter", "RestrictAddressFamilies"):
        assert hardening in s, hardening
    env_file = tmp_path / "etc/autobyteus/env"
    assert s["EnvironmentFile"] == ["-/etc/autobyteus/env"]
    assert env_file.stat().st_mode & 0o777 == 0o640  # it will hold the API token
    # Installing again keeps the operator's settings.
    env_file.write_text("AUTOBYTEUS_API_TOKEN=kept\n")
    assert install_unit(tmp_path).returncode == 0
    assert env_file.read_text() == "AUTOBYTEUS_API_TOKEN=kept\n"
    refused = install_unit(tmp_path, "--data-dir", "/srv/data")
    assert refused.returncode == 2 and "/var/lib" in refused.stderr


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.skip("systemd-analyze is not installed (Debian package: systemd)")
    return found


def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    tool = systemd_analyze()
    assert install_unit(tmp_path).returncode == 0
    unit = tmp_path / "etc/systemd/system" / UNIT
    verify = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True,
                            timeout=60)
    # verify warns of unknown keys and bad values on stderr without failing: none is allowed.
    assert verify.returncode == 0 and verify.stderr.strip() == "", verify.stderr
    security = subprocess.run([tool, "security", "--offline=yes", str(unit)],
                              capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", security.stdout)
    assert match, security.stdout + security.stderr
    assert float(match.group(1)) <= 2.0, security.stdout  # "OK" on systemd's 0-10 scale


def test_systemd_analyze_catches_a_broken_unit(tmp_path: Path) -> None:
    """The check above has teeth: a misspelt key or a bad value is reported."""
    tool = systemd_analyze()
    assert install_unit(tmp_path).returncode == 0
    unit = tmp_path / "etc/systemd/system" / UNIT
    good = unit.read_text()
    for broken in (good.replace("ProtectSystem=", "ProtectSystm="),
                   good.replace("Restart=on-failure", "Restart=sometimes")):
        unit.write_text(broken)
        verify = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True,
                                timeout=60)
        assert verify.stderr.strip(), broken


def test_termux_install_and_start(tmp_path: Path) -> None:
    home, prefix = tmp_path / "home", tmp_path / "usr"
    base_env = {"PATH": os.environ["PATH"], "HOME": str(home), "PREFIX": str(prefix)}
    done = subprocess.run(["sh", str(DEPLOY / "termux/install.sh")],
                          env={**base_env, "SKIP_PIP": "1"}, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    start = home / "bin/autobyteus-start"
    run = prefix / "var/service/autobyteus/run"
    boot = home / ".termux/boot/autobyteus"
    for script in (start, run, boot, prefix / "var/service/autobyteus/log/run"):
        assert script.stat().st_mode & 0o111, script
        assert script.read_text().startswith(f"#!{prefix}/bin/sh"), script
    assert str(start) in run.read_text() and str(start) in boot.read_text()
    assert (home / ".config/autobyteus/env").stat().st_mode & 0o777 == 0o600
    (home / ".config/autobyteus/env").write_text("AUTOBYTEUS_LOG_FORMAT=json\n")

    # The start script runs the server (the virtual environment of this test run stands in for
    # the one pip would have made), with the low-power preset and the home's data directory.
    proc = subprocess.Popen(
        ["sh", str(start), "--port", "0"], cwd=tmp_path, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
        env={**base_env, "AUTOBYTEUS_VENV": str(VENV), "PYTHONPATH": str(ROOT)})
    assert proc.stderr is not None
    lines = []
    url = None
    for line in proc.stderr:
        lines.append(line)
        match = re.search(r"listening on (http://\S+)", line)
        if match:
            url = match.group(1)
            break
    try:
        assert url, "".join(lines)
        with urllib.request.urlopen(url + "/health", timeout=30) as resp:
            assert resp.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=60)[1]
    assert proc.returncode == 0, rest
    settings_line = next(line for line in lines if '"settings"' in line)
    assert '"preset":"low-power"' in settings_line and '"threads":2' in settings_line
    data_dir = home / ".local/share/autobyteus/data"
    assert f'"data_dir":"{data_dir}"' in settings_line
    assert (data_dir / "lmdb").is_dir()

"""The Debian package's dependency lists stay in step: every Python dependency of callproof
is either a Debian package in control's Depends: or a wheel shipped in the package, and the
sandbox rootfs carries every Debian dependency (the package test installs offline)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

from callproof.sandbox.rootfs import PACKAGES

REPO = Path(__file__).resolve().parents[2]

#: PyPI name -> the Debian package that provides it
DEBIAN_NAMES = {
    "aiohttp": "python3-aiohttp", "aiosqlite": "python3-aiosqlite", "audioop-lts": "python3-audioop-lts",
    "babel": "python3-babel",
    "cryptography": "python3-cryptography", "fpdf2": "python3-fpdf", "jinja2": "python3-jinja2",
    "panoramisk": "python3-panoramisk", "pydub": "python3-pydub", "python-stdnum": "python3-stdnum",
    "tqdm": "python3-tqdm",
}


def _build_deb():
    loader = importlib.machinery.SourceFileLoader("build_deb", str(REPO / "scripts" / "build-deb"))
    spec = importlib.util.spec_from_loader("build_deb", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def _depends() -> list[str]:
    control = (REPO / "packaging" / "deb" / "control.in").read_text()
    line = next(line for line in control.splitlines() if line.startswith("Depends:"))
    # the first alternative of each, without its version
    return [re.split(r"[\s(|]", item.strip(), maxsplit=1)[0] for item in line.split(":", 1)[1].split(",")]


def _python_dependencies() -> list[str]:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return [re.split(r"[<>=;!~\s\[]", dep, maxsplit=1)[0].lower() for dep in deps]


def test_every_python_dependency_is_a_debian_package_or_a_shipped_wheel() -> None:
    shipped = set(_build_deb().SHIPPED_WHEELS)
    depends = set(_depends())
    for name in _python_dependencies():
        assert name in shipped or DEBIAN_NAMES.get(name) in depends, (
            f"{name}: add its Debian package to packaging/deb/control.in (and DEBIAN_NAMES here), "
            "or, when Debian has none recent enough, to SHIPPED_WHEELS in scripts/build-deb")


def test_the_sandbox_rootfs_carries_the_packages_debian_dependencies() -> None:
    missing = [name for name in _depends() if name not in PACKAGES]
    assert missing == [], f"add {missing} to PACKAGES in sandbox/rootfs.py (the package test runs offline)"


def test_the_units_the_package_ships_exist() -> None:
    for unit in _build_deb().UNITS:
        assert (REPO / "deploy" / unit).is_file(), unit


def test_the_maintainer_scripts_and_the_wrapper_are_valid_sh() -> None:
    sh = shutil.which("sh")
    assert sh is not None
    for name in ("postinst", "prerm", "postrm", "callproof.sh"):
        done = subprocess.run([sh, "-n", str(REPO / "packaging" / "deb" / name)], capture_output=True, text=True)
        assert done.returncode == 0, f"{name}: {done.stderr}"


def test_the_wrapper_exports_the_secrets_as_data_and_lets_the_caller_win(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.env"
    secrets.write_text("# comment\nCALLPROOF_ARI_PASSWORD=a b$(touch pwned)\nCALLPROOF_X$(touch pwned2)=1\n"
                       "CALLPROOF_AMI_PASSWORD=from-file\n")
    wrapper = (REPO / "packaging" / "deb" / "callproof.sh").read_text()
    wrapper = wrapper.replace("/etc/callproof/secrets.env", str(secrets))
    wrapper = wrapper.replace('exec /opt/callproof/bin/callproof "$@"', "env")
    script = tmp_path / "callproof"
    script.write_text(wrapper)
    done = subprocess.run(["sh", str(script)], capture_output=True, text=True, cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin", "CALLPROOF_AMI_PASSWORD": "mine"})
    env = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    assert env["CALLPROOF_ARI_PASSWORD"] == "a b$(touch pwned)"
    assert env["CALLPROOF_AMI_PASSWORD"] == "mine"
    assert env["CALLPROOF_CONFIG"] == "/etc/callproof/callproof.toml"
    assert not any(k.startswith("CALLPROOF_X") for k in env)
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()

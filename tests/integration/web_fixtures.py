"""Helpers for the end-to-end test of the ops web page: ``callproof web`` as a
real subprocess on a free loopback port, accounts made with the CLI, and a
real headless Chromium (Debian's package) driven by Playwright's client.

Under CI (``CI=true``) a missing Chromium or Playwright FAILS the test; a
silently skipped browser test would look green.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NoReturn

import pytest

from callproof.config import Config
from callproof.sandbox.ports import free_port as sandbox_free_port

from .conftest import REPO_ROOT, in_ci

SCREENSHOTS = REPO_ROOT / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 # the test starts playback itself (from a script, not a click on the control)
                 "--autoplay-policy=no-user-gesture-required"]
IDENTITY_KEY = "0841b8618bdca36754c0926a4c351b21f544db4f68af9ada"  # random: configuration refuses regular secrets
LINK_SECRET = "fe82c5217a18b097d3749b319e6f12a6ffaf0281f733fe89"  # random: configuration refuses regular secrets


def browser_unavailable(reason: str) -> NoReturn:
    if in_ci():
        pytest.fail(f"headless Chromium is required under CI but unavailable: {reason}", pytrace=False)
    pytest.skip(f"headless Chromium unavailable: {reason}")


def chromium_path() -> str:
    path = shutil.which("chromium")
    if path is None:
        browser_unavailable("no `chromium` on PATH (Debian package chromium)")
    return path


def free_port() -> int:
    """A loopback port outside the kernel's ephemeral range: no other test worker's
    connection can take it before the peer binds it (see callproof.sandbox.ports)."""
    return sandbox_free_port()


def write_toml(path: Path, tables: dict[str, dict[str, Any]]) -> Path:
    """``tables`` as a TOML file (each value JSON-quoted, which TOML reads the same), 0600 like a
    real configuration holding secrets."""
    lines = []
    for name, table in tables.items():
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {json.dumps(v)}" for k, v in table.items())
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


async def login_in_browser(page: Any, base: str, username: str, password: str) -> None:
    """Log ``page`` in through the login form, as a person does."""
    await page.goto(f"{base}/login")
    await page.fill("#username", username)
    await page.fill("#password", password)
    async with page.expect_navigation():
        await page.click("#login")


def write_web_config(app_config: Config, run_dir: Path, port: int, **web: Any) -> Path:
    """A config for ``callproof web`` on the application's database and recordings."""
    tables: dict[str, dict[str, Any]] = {
        "general": {"timezone": app_config.general.timezone},
        # the application's database on either engine (a PostgreSQL password: the secrets.env
        # beside the application's configuration, read when run_dir is its folder)
        "storage": {"database": str(app_config.storage.database),
                    **({"url": app_config.storage.url} if app_config.storage.url else {})},
        "recording": {"root": str(app_config.recording.root)},
        "rights": {"identity_key": IDENTITY_KEY, "link_secret": LINK_SECRET,
                   "export_dir": str(run_dir / "exports"),
                   "public_base_url": f"http://127.0.0.1:{port}/"},
        "web": {"host": "127.0.0.1", "port": port, **web},
        # the one configuration of the host: exports check recordings against the signed evidence
        "evidence": {k: str(v) for k, v in (("signing_key", app_config.evidence.signing_key),
                                            ("trusted_keys", app_config.evidence.trusted_keys)) if v},
        "logging": {"level": "INFO", "format": "text"},
    }
    if app_config.encryption.enabled:  # the web side decrypts with the private keyring
        enc = app_config.encryption
        tables["encryption"] = {"enabled": True, "public_keys_dir": str(enc.public_keys_dir),
                                "private_keys_dir": str(enc.private_keys_dir)}
    return write_toml(run_dir / "web.toml", tables)


def cli(config_path: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "callproof.cli", "--config", str(config_path), *args],
                          input=stdin, capture_output=True, text=True, timeout=60)


def add_web_user(config_path: Path, name: str, role: str, password: str) -> None:
    """``callproof web-user add`` with the password on stdin, as an admin would script it."""
    done = cli(config_path, "web-user", "add", name, "--role", role, stdin=password + "\n")
    assert done.returncode == 0, done.stderr
    assert password not in done.stdout + done.stderr


@asynccontextmanager
async def web_server(config_path: Path, port: int, log_path: Path) -> AsyncIterator[str]:
    """``callproof web`` until the block ends (SIGTERM); yields its base URL."""
    log = log_path.open("w")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "callproof.cli", "--config", str(config_path), "web", "--port", str(port),
        stdout=asyncio.subprocess.PIPE, stderr=log, cwd=REPO_ROOT)
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert b"listening on" in line, (line, log_path.read_text())
        yield f"http://127.0.0.1:{port}"
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        log.close()


@asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    """A headless Chromium (the system's, never a downloaded one)."""
    path = chromium_path()
    try:
        from playwright.async_api import async_playwright
    except ImportError as exc:
        browser_unavailable(f"Playwright's Python client is not installed: {exc}")
    async with async_playwright() as pw:
        try:
            browser = await pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, headless=True)
        except Exception as exc:
            browser_unavailable(f"{path} did not start: {exc}")
        try:
            yield browser
        finally:
            await browser.close()


async def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


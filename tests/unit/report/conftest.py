"""The seeded two months (tests/report_seed.py) and the report read from them."""

from __future__ import annotations

from pathlib import Path

import pytest

from callproof.config import Config, load_config
from callproof.report.figures import Report, read_report
from callproof.storage import connect_sync, open_sync
from tests.report_seed import FIRST, LAST, NOW, seed_two_months


def write_config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "callproof.toml"
    path.write_text(f'[general]\ntimezone = "America/Sao_Paulo"\n[storage]\ndatabase = "{tmp_path / "r.db"}"\n'
                    + extra)
    path.chmod(0o600)
    return path


@pytest.fixture
def seeded_config(tmp_path: Path) -> Config:
    config = load_config(write_config(tmp_path), env={}, require_asterisk_apis=False)
    conn = connect_sync(config.storage.database)
    try:
        seed_two_months(conn)
    finally:
        conn.close()
    return config


@pytest.fixture
def report(seeded_config: Config) -> Report:
    with open_sync(seeded_config) as db:
        return read_report(db, seeded_config, FIRST, LAST, NOW)

"""[storage] url: PostgreSQL instead of the SQLite file; the password only from the secrets."""

from pathlib import Path

import pytest

from callproof.config import ConfigError, load_config

GOOD = """
[ari]
password = "s3cure-ari-passphrase"
[ami]
password = "s3cure-ami-passphrase"
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "callproof.toml"
    p.write_text(text)
    p.chmod(0o600)
    return p


def test_sqlite_stays_the_default(tmp_path):
    cfg = load_config(write(tmp_path, GOOD), env={})
    assert cfg.storage.engine == "sqlite" and cfg.storage.target == str(cfg.storage.database)


def test_a_postgresql_url_with_the_password_from_the_secrets(tmp_path):
    (tmp_path / "secrets.env").write_text("CALLPROOF_STORAGE_PASSWORD=Kq8-pg-Secret-4f2\n")
    (tmp_path / "secrets.env").chmod(0o600)
    cfg = load_config(write(tmp_path, GOOD + '[storage]\nurl = "postgresql://callproof@db1.example/callproof"\n'),
                      env={})
    assert cfg.storage.engine == "postgresql"
    assert cfg.storage.target == "postgresql://callproof@db1.example/callproof"
    assert cfg.storage.password == "Kq8-pg-Secret-4f2"


def test_postgresql_without_its_driver_is_refused_at_start_up(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "psycopg" else real(name, *a))
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, GOOD + '[storage]\nurl = "postgresql://callproof@db1/callproof"\n'), env={})
    assert err.value.key == "storage.url" and "python3-psycopg" in str(err.value)


@pytest.mark.parametrize(("url", "says"), [
    ("mysql://callproof@db1/callproof", "postgresql://"),
    ("postgresql://callproof:Hunter2-Secret@db1/callproof", "must not hold the password"),
    ("postgresql://callproof@db1/callproof?password=Hunter2-Secret", "must not hold the password"),
    ("postgresql://callproof@db1/", "must name the database"),
    ("postgresql://db1/callproof", "must name the user"),
    ("postgresql://callproof@db1:port/callproof", "not a URL"),
])
def test_an_unusable_url_fails_at_start_up_naming_the_key_and_never_the_password(tmp_path, url, says):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, GOOD + f'[storage]\nurl = "{url}"\n'), env={})
    assert err.value.key == "storage.url" and says in str(err.value)
    assert "Hunter2-Secret" not in str(err.value)

"""Credentials from the environment and from a 0600 TOML file (design.md §1.6)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gapless.errors import ConfigError
from gapless.secrets import CREDENTIALS_FILE_ENV, Credentials, Secret, load_credentials_file

KEY = "canary-key-3f9a"
SECRET = "canary-secret-77b1"
PHRASE = "canary-phrase-c0de"


def _write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_file_loads_every_venue(tmp_path: Path) -> None:
    f = _write(
        tmp_path / "creds.toml",
        f'[kraken]\napi_key = "{KEY}"\napi_secret = "{SECRET}"\n\n'
        f'[kucoin]\napi_key = "k2"\napi_secret = "s2"\npassphrase = "{PHRASE}"\n',
    )
    creds = load_credentials_file(f)
    assert set(creds) == {"kraken", "kucoin"}
    assert creds["kraken"].api_key == Secret(KEY)
    assert creds["kucoin"].passphrase == Secret(PHRASE)
    text = repr(creds) + str(creds["kucoin"])
    for value in (KEY, SECRET, PHRASE):
        assert value not in text


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    f = _write(
        tmp_path / "creds.toml", f'[kraken]\napi_key = "{KEY}"\napi_secret = "{SECRET}"\n', mode
    )
    with pytest.raises(ConfigError, match="chmod 600"):
        load_credentials_file(f)


def test_symlink_and_missing_file_are_refused(tmp_path: Path) -> None:
    real = _write(tmp_path / "real.toml", f'[kraken]\napi_key = "{KEY}"\napi_secret = "{SECRET}"\n')
    link = tmp_path / "link.toml"
    link.symlink_to(real)
    with pytest.raises(ConfigError, match="regular file"):
        load_credentials_file(link)
    with pytest.raises(ConfigError, match="does not exist"):
        load_credentials_file(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    "text",
    [
        f'[kraken]\napi_key = "{KEY}"\n',  # no secret
        f'[kraken]\napi_key = "{KEY}"\napi_secret = "{SECRET}"\nextra = "x"\n',
        f'[kraken]\napi_key = "{KEY}"\napi_secret = 5\n',
        f'[kraken]\napi_key = "{KEY}"\napi_secret = "{SECRET}\n',  # broken TOML
        f'kraken = "{SECRET}"\n',
    ],
)
def test_bad_files_give_clear_errors_that_never_quote_values(tmp_path: Path, text: str) -> None:
    f = _write(tmp_path / "creds.toml", text)
    with pytest.raises(ConfigError) as info:
        load_credentials_file(f)
    assert SECRET not in str(info.value)
    assert KEY not in str(info.value)


def test_environment_wins_over_the_file(tmp_path: Path) -> None:
    f = _write(tmp_path / "creds.toml", f'[kraken]\napi_key = "{KEY}"\napi_secret = "{SECRET}"\n')
    env = {CREDENTIALS_FILE_ENV: str(f)}
    from_file = Credentials.load("kraken", environ=env)
    assert from_file is not None
    assert from_file.api_key == Secret(KEY)
    env.update({"GAPLESS_KRAKEN_API_KEY": "envkey", "GAPLESS_KRAKEN_API_SECRET": "envsecret"})
    from_env = Credentials.load("kraken", environ=env)
    assert from_env is not None
    assert from_env.api_key == Secret("envkey")
    assert Credentials.load("binance", environ=env) is None
    assert Credentials.load("kraken", environ={}) is None

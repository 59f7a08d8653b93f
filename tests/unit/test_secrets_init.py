import os
import stat

import pytest

from mlflow_stack import StackError
from mlflow_stack.secrets_init import SECRETS, ensure_secrets

UIDS = {service: os.getuid() for service in ("postgres", "minio", "mlflow", "models")}


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_text() for p in root.rglob("*") if p.is_file()}


def test_first_start_generates_strong_private_secrets(tmp_path):
    ensure_secrets(tmp_path, {}, UIDS)
    files = _files(tmp_path)
    for secret in SECRETS:
        copies = {files[f"{reader}/{secret.name}"] for reader in secret.readers}
        assert len(copies) == 1, f"{secret.name} differs between its readers"
        value = copies.pop()
        assert len(value) >= max(secret.min_length, 12 if "password" in secret.name else 0)
    assert len(files["mlflow/admin_password"]) >= 16
    for path in tmp_path.rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), path


def test_each_service_gets_only_its_own_secrets(tmp_path):
    ensure_secrets(tmp_path, {}, UIDS)
    files = _files(tmp_path)
    assert not any(name.startswith("mlflow/minio_root") for name in files)
    assert set(n for n in files if n.startswith("postgres/")) == {"postgres/postgres_password"}


def test_second_start_keeps_values_and_generation_is_random(tmp_path):
    ensure_secrets(tmp_path / "a", {}, UIDS)
    first = _files(tmp_path / "a")
    report = ensure_secrets(tmp_path / "a", {}, UIDS)
    assert _files(tmp_path / "a") == first
    assert all(": kept" in line for line in report)
    ensure_secrets(tmp_path / "b", {}, UIDS)
    other = _files(tmp_path / "b")
    assert first["mlflow/admin_password"] != other["mlflow/admin_password"]


def test_operator_value_wins_and_reaches_every_reader(tmp_path):
    ensure_secrets(tmp_path, {}, UIDS)
    ensure_secrets(tmp_path, {"POSTGRES_PASSWORD": "operator-chosen-pw"}, UIDS)
    files = _files(tmp_path)
    assert files["postgres/postgres_password"] == "operator-chosen-pw"
    assert files["mlflow/postgres_password"] == "operator-chosen-pw"


def test_short_operator_password_fails_and_writes_nothing(tmp_path):
    with pytest.raises(StackError) as e:
        ensure_secrets(tmp_path, {"MLFLOW_ADMIN_PASSWORD": "short"}, UIDS)
    assert "MLFLOW_ADMIN_PASSWORD in .env has 5 characters; it needs at least 12" in str(e.value)
    assert _files(tmp_path) == {}


def test_mlflows_old_default_admin_password_is_refused(tmp_path):
    from mlflow.server.auth import _LEGACY_DEFAULT_ADMIN_PASSWORD

    with pytest.raises(StackError) as e:
        ensure_secrets(tmp_path, {"MLFLOW_ADMIN_PASSWORD": _LEGACY_DEFAULT_ADMIN_PASSWORD}, UIDS)
    assert "MLFLOW_ADMIN_PASSWORD in .env is the admin password older MLflow" in str(e.value)
    assert _files(tmp_path) == {}
    # Only the admin's: another account may have any password MLflow accepts.
    ensure_secrets(tmp_path, {"MLFLOW_MODELS_PASSWORD": _LEGACY_DEFAULT_ADMIN_PASSWORD}, UIDS)


def test_unsafe_characters_are_refused_with_the_allowed_set(tmp_path):
    with pytest.raises(StackError, match="may contain only letters, digits"):
        ensure_secrets(tmp_path, {"MINIO_ROOT_PASSWORD": "has:colon@and/slash"}, UIDS)


FERNET = "x" * 43 + "="  # urlsafe base64 of 32 bytes


def test_encryption_keys_are_generated_strong_and_kept(tmp_path):
    import base64

    ensure_secrets(tmp_path, {}, UIDS)
    files = _files(tmp_path)
    assert len(files["mlflow/crypto_kek_passphrase"]) >= 32
    assert len(base64.urlsafe_b64decode(files["mlflow/webhook_encryption_key"])) == 32
    assert not any(name.endswith(".previous") for name in files)
    ensure_secrets(tmp_path, {}, UIDS)
    assert _files(tmp_path) == files
    other = tmp_path / "other"
    ensure_secrets(other, {}, UIDS)
    assert _files(other)["mlflow/crypto_kek_passphrase"] != files["mlflow/crypto_kek_passphrase"]


def test_a_new_key_from_env_keeps_the_replaced_ones_newest_first(tmp_path):
    ensure_secrets(tmp_path, {}, UIDS)
    first = _files(tmp_path)["mlflow/crypto_kek_passphrase"]
    second, third = "b" * 32, "c" * 40
    ensure_secrets(tmp_path, {"MLFLOW_CRYPTO_KEK_PASSPHRASE": second}, UIDS)
    ensure_secrets(tmp_path, {"MLFLOW_CRYPTO_KEK_PASSPHRASE": second}, UIDS)  # unchanged
    ensure_secrets(tmp_path, {"MLFLOW_CRYPTO_KEK_PASSPHRASE": third}, UIDS)
    files = _files(tmp_path)
    assert files["mlflow/crypto_kek_passphrase"] == third
    assert files["mlflow/crypto_kek_passphrase.previous"].splitlines() == [second, first]
    mode = stat.S_IMODE((tmp_path / "mlflow/crypto_kek_passphrase.previous").stat().st_mode)
    assert mode == 0o600
    ensure_secrets(tmp_path, {"MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": FERNET}, UIDS)
    assert _files(tmp_path)["mlflow/webhook_encryption_key"] == FERNET
    assert "mlflow/webhook_encryption_key.previous" in _files(tmp_path)


def test_short_passphrase_is_refused(tmp_path):
    with pytest.raises(StackError, match="at least 32 characters"):
        ensure_secrets(tmp_path, {"MLFLOW_CRYPTO_KEK_PASSPHRASE": "too short"}, UIDS)
    assert _files(tmp_path) == {}


@pytest.mark.parametrize("value", ["not-a-key", "x" * 44, "x" * 42 + "==", "é" * 44])
def test_a_key_that_is_not_a_fernet_key_is_refused_in_one_sentence(tmp_path, value):
    with pytest.raises(StackError) as e:
        ensure_secrets(tmp_path, {"MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": value}, UIDS)
    assert "is not a Fernet key" in str(e.value) and value not in str(e.value)
    assert _files(tmp_path) == {}

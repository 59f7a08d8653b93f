import configparser
import stat

from mlflow.server.auth.config import read_auth_config

from mlflow_stack.runtime_files import write_runtime_files
from mlflow_stack.settings import Settings

SECRETS = {
    "postgres_password": "pg-Pass.word~123",
    "s3_access_key": "mlflow-abc",
    "s3_secret_key": "s3-secret-0123456789",
    "admin_password": "admin-pass-0123456789",
    "flask_secret_key": "f" * 64,
}


def test_files_are_private_and_mlflow_reads_the_auth_config(tmp_path, monkeypatch):
    settings = Settings.from_env({"MLFLOW_DEFAULT_PERMISSION": "EDIT", "MLFLOW_AUTH_CACHE_TTL_SECONDS": "30"})
    env = write_runtime_files(tmp_path / "run", settings, SECRETS)

    for path in env.values():
        mode = stat.S_IMODE((tmp_path / "run" / path.rsplit("/", 1)[1]).stat().st_mode)
        assert mode == 0o600

    # Read it back with MLflow's own parser, as the server will.
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", env["MLFLOW_AUTH_CONFIG_PATH"])
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_PASSWORD", raising=False)
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_USERNAME", raising=False)
    config = read_auth_config()
    assert config.default_permission == "EDIT"
    assert config.database_uri == "postgresql+psycopg2://mlflow@postgres:5432/mlflow_auth"
    assert config.admin_username == "admin"
    assert config.admin_password == SECRETS["admin_password"]
    assert config.auth_cache_ttl_seconds == 30


def test_pgpass_and_aws_credentials(tmp_path):
    env = write_runtime_files(tmp_path, Settings.from_env({}), SECRETS)
    assert open(env["PGPASSFILE"]).read() == "postgres:5432:*:mlflow:pg-Pass.word~123\n"
    aws = configparser.ConfigParser()
    aws.read(env["AWS_SHARED_CREDENTIALS_FILE"])
    assert aws["default"]["aws_access_key_id"] == "mlflow-abc"
    assert aws["default"]["aws_secret_access_key"] == "s3-secret-0123456789"

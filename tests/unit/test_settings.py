import pytest

from mlflow_stack import StackError
from mlflow_stack.runtime_files import pgpass
from mlflow_stack.settings import BUILTIN_ALLOWED_HOSTS, Settings, allowed_hosts, default_workers


def test_defaults():
    s = Settings.from_env({})
    assert s.default_permission == "READ"
    assert s.admin_username == "admin"
    assert s.workers == default_workers()
    assert s.job_engine == "executor"
    assert s.auth_cache_ttl_seconds == 60
    assert s.bucket == "mlflow"
    assert s.allowed_hosts == list(BUILTIN_ALLOWED_HOSTS)


def test_default_workers_follow_the_cores():
    assert [default_workers(n) for n in (1, 2, 3, 4, 16)] == [2, 4, 6, 8, 8]


def test_service_name_and_loopback_always_allowed():
    hosts = allowed_hosts("")
    for host in ("mlflow:*", "localhost:*", "127.0.0.1:*"):
        assert host in hosts


def test_public_names_are_allowed_on_any_port_unless_a_port_is_given():
    hosts = allowed_hosts(" mlflow.example.com, ml.corp:8443 ,,")
    assert "mlflow.example.com" in hosts
    assert "mlflow.example.com:*" in hosts
    assert "ml.corp:8443" in hosts
    assert "ml.corp" not in hosts


@pytest.mark.parametrize("bad", ["https://mlflow.example.com", "host/path", "a b"])
def test_urls_and_junk_in_allowed_hosts_are_refused(bad):
    with pytest.raises(StackError, match="MLFLOW_ALLOWED_HOSTS"):
        allowed_hosts(bad)


def test_permission_is_normalised_and_checked():
    assert Settings.from_env({"MLFLOW_DEFAULT_PERMISSION": "edit"}).default_permission == "EDIT"
    with pytest.raises(StackError, match="MLFLOW_DEFAULT_PERMISSION='WRITE' is not one of"):
        Settings.from_env({"MLFLOW_DEFAULT_PERMISSION": "write"})


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MLFLOW_WORKERS", "four", "not a whole number"),
        ("MLFLOW_WORKERS", "0", "at least 1"),
        ("MLFLOW_JOB_ENGINE", "celery", "not one of executor, huey"),
        ("MLFLOW_AUTH_CACHE_TTL_SECONDS", "-1", "at least 0"),
        ("MLFLOW_S3_BUCKET", "My_Bucket", "not a valid bucket name"),
    ],
)
def test_bad_values_name_the_variable(name, value, message):
    with pytest.raises(StackError, match=message) as e:
        Settings.from_env({name: value})
    assert name in str(e.value)


def test_database_uri_uses_psycopg2_and_holds_no_password():
    uri = Settings.from_env({}).database_uri("mlflow_auth")
    assert uri == "postgresql+psycopg2://mlflow@postgres:5432/mlflow_auth"
    tracking = Settings.from_env({}).tracking_store_uri()
    assert tracking == "postgresql+psycopg2://mlflow@postgres:5432/mlflow?plugin=stack_batching"


def test_batching_plugin_sets_psycopg2_executemany_mode():
    import sqlalchemy
    from sqlalchemy.dialects.postgresql.psycopg2 import PGDialect_psycopg2
    from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite

    from mlflow_stack.sqlalchemy_batching import BatchingPlugin

    url = sqlalchemy.engine.make_url(Settings.from_env({}).tracking_store_uri())
    plugin = BatchingPlugin(url, {})
    args = {}
    plugin.handle_dialect_kwargs(PGDialect_psycopg2, args)
    assert args == {"executemany_mode": "values_plus_batch"}
    other = {}
    plugin.handle_dialect_kwargs(SQLiteDialect_pysqlite, other)
    assert other == {}


def test_listed_names_are_allowed_browser_origins_and_nothing_else_by_default():
    assert Settings.from_env({}).cors_allowed_origins == []
    origins = Settings.from_env({"MLFLOW_ALLOWED_HOSTS": "mlflow.example.com,10.1.2.3:5000,*"}
                                ).cors_allowed_origins
    assert origins == [
        "http://mlflow.example.com", "https://mlflow.example.com",
        "http://mlflow.example.com:*", "https://mlflow.example.com:*",
        "http://10.1.2.3:5000", "https://10.1.2.3:5000",
    ]


def test_extra_origins_are_checked_and_added():
    s = Settings.from_env({"MLFLOW_CORS_ALLOWED_ORIGINS": " https://notebooks.example.com/ ,"})
    assert s.cors_allowed_origins == ["https://notebooks.example.com"]
    s = Settings.from_env({"MLFLOW_CORS_ALLOWED_ORIGINS": "https://*.example.com,http://nb:*"})
    assert s.cors_allowed_origins == ["https://*.example.com", "http://nb:*"]
    for bad in ("notebooks.example.com", "*", "https://*", "http://*:*", "https://a.com/path"):
        with pytest.raises(StackError, match="MLFLOW_CORS_ALLOWED_ORIGINS entry"):
            Settings.from_env({"MLFLOW_CORS_ALLOWED_ORIGINS": bad})


def test_database_pools_keep_ten_open_and_stay_within_postgres():
    from mlflow_stack.settings import default_pool

    assert [default_pool(w) for w in (2, 4, 6, 8)] == [(10, 5), (10, 5), (10, 5), (10, 1)]
    for workers in range(1, 9):
        pool, overflow = default_pool(workers)
        assert workers * 2 * (pool + overflow) <= 180
    s = Settings.from_env({"MLFLOW_WORKERS": "4"})
    assert (s.db_pool_size, s.db_max_overflow) == (10, 5)
    s = Settings.from_env({"MLFLOW_WORKERS": "2", "MLFLOW_DB_POOL_SIZE": "20", "MLFLOW_DB_MAX_OVERFLOW": "0"})
    assert (s.db_pool_size, s.db_max_overflow) == (20, 0)


def test_pools_larger_than_postgres_accepts_are_refused_with_the_arithmetic():
    with pytest.raises(StackError) as e:
        Settings.from_env({"MLFLOW_WORKERS": "8", "MLFLOW_DB_POOL_SIZE": "10", "MLFLOW_DB_MAX_OVERFLOW": "10"})
    assert "8 workers x 2 databases x (MLFLOW_DB_POOL_SIZE 10 + MLFLOW_DB_MAX_OVERFLOW 10) is 320" in str(e.value)
    assert "PostgreSQL accepts 200" in str(e.value)


def test_migrations_run_at_start_unless_a_job_does_them():
    assert Settings.from_env({}).migrations == "at-start"
    assert Settings.from_env({"MLFLOW_MIGRATIONS": "Job"}).migrations == "job"
    with pytest.raises(StackError, match="MLFLOW_MIGRATIONS='later'"):
        Settings.from_env({"MLFLOW_MIGRATIONS": "later"})


def test_an_external_database_user_reaches_the_uri_and_pgpass():
    settings = Settings.from_env({"POSTGRES_USER": "team_mlflow", "POSTGRES_HOST": "db.example"})
    assert settings.database_uri("mlflow_auth") == (
        "postgresql+psycopg2://team_mlflow@db.example:5432/mlflow_auth")
    assert pgpass(settings, "pw") == "db.example:5432:*:team_mlflow:pw\n"
    with pytest.raises(StackError, match="not a PostgreSQL role name"):
        Settings.from_env({"POSTGRES_USER": "bad user;"})


def test_job_runner_elsewhere_needs_the_executor_engine():
    assert Settings.from_env({}).job_runner == "this-server"
    assert Settings.from_env({"MLFLOW_JOB_RUNNER": "elsewhere"}).job_runner == "elsewhere"
    with pytest.raises(StackError, match="needs MLFLOW_JOB_ENGINE=executor"):
        Settings.from_env({"MLFLOW_JOB_RUNNER": "elsewhere", "MLFLOW_JOB_ENGINE": "huey"})


def test_trusted_proxies_are_networks():
    settings = Settings.from_env({"MLFLOW_TRUSTED_PROXIES": "10.244.0.0/16, 192.168.7.1"})
    assert [str(n) for n in settings.trusted_proxies] == ["10.244.0.0/16", "192.168.7.1/32"]
    with pytest.raises(StackError, match="'ingress' is not an address or network"):
        Settings.from_env({"MLFLOW_TRUSTED_PROXIES": "ingress"})

"""SQLAlchemy engine plugin: psycopg2 executemany() batches in one round trip.

MLflow's log_batch updates `latest_metrics` with one UPDATE per metric in an ORM flush,
which psycopg2's executemany() sends to PostgreSQL one statement and one round trip at a
time (ten round trips for a batch of ten metrics). SQLAlchemy's psycopg2 dialect can send
them together through psycopg2.extras.execute_batch (`executemany_mode=
"values_plus_batch"`); MLflow has no setting for engine options, so Settings.database_uri
names this plugin in the URI (`?plugin=stack_batching`, registered in pyproject.toml) and
SQLAlchemy applies it to every engine MLflow creates for that URI.
"""

from sqlalchemy.engine import CreateEnginePlugin


class BatchingPlugin(CreateEnginePlugin):
    def handle_dialect_kwargs(self, dialect_cls, dialect_args):
        if getattr(dialect_cls, "driver", None) == "psycopg2":
            dialect_args.setdefault("executemany_mode", "values_plus_batch")

    def update_url(self, url):
        return url  # SQLAlchemy drops the `plugin` argument itself

"""The running server's database engine: MLflow's own, with the stack's batching plugin
(server/mlflow_stack/sqlalchemy_batching.py) applied through the backend store URI."""

PROBE = """
import pathlib, sqlalchemy
for p in pathlib.Path('/proc').glob('[0-9]*/cmdline'):
    argv = p.read_bytes().split(b'\\0')
    if b'--backend-store-uri' in argv:
        uri = argv[argv.index(b'--backend-store-uri') + 1].decode()
        break
engine = sqlalchemy.create_engine(uri)
print(uri, engine.dialect.executemany_mode.name, dict(engine.url.query))
"""


def test_server_engine_batches_executemany(stack):
    out = stack.exec("mlflow", "python", "-c", PROBE).strip().splitlines()[-1]
    uri, mode, query = out.split(" ", 2)
    assert uri.endswith("?plugin=stack_batching"), uri
    assert mode == "EXECUTEMANY_VALUES_PLUS_BATCH", out
    assert query == "{}", f"the plugin argument would reach psycopg2: {out}"

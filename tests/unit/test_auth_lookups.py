import ast
import inspect

import flask
import pytest

from mlflow_stack.auth_lookups import _AuthTrackingStore, _once_per_request, _remembered


def _auth_module_tree():
    import mlflow.server.auth as auth

    return ast.parse(inspect.getsource(auth))


def _reads_only_the_experiment(node, parents) -> bool:
    """node.info.experiment_id, or a check that node is None."""
    parent = parents.get(node)
    if isinstance(parent, ast.Compare):
        return True
    grandparent = parents.get(parent)
    return (isinstance(parent, ast.Attribute) and parent.attr == "info"
            and isinstance(grandparent, ast.Attribute) and grandparent.attr == "experiment_id")


def test_mlflow_auth_reads_nothing_of_a_run_but_its_experiment():
    """The lean store's get_run answers only run.info.experiment_id. This fails when
    MLflow's auth module reads anything else of a run it fetched (then the lean store must
    learn it), or no longer fetches runs at all (then auth_lookups.py can go)."""
    tree = _auth_module_tree()
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    fetching = 0
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef):
            continue
        fetches = [n for n in ast.walk(function) if isinstance(n, ast.Attribute) and n.attr == "get_run"]
        if not fetches:
            continue
        fetching += 1
        for fetch in fetches:
            call = parents[fetch]
            if isinstance(call, ast.Call) and call.func is fetch and isinstance(parents[call], ast.Attribute):
                assert _reads_only_the_experiment(call, parents), ast.unparse(parents[call])
        for name in ast.walk(function):
            if isinstance(name, ast.Name) and name.id == "run" and isinstance(name.ctx, ast.Load):
                assert _reads_only_the_experiment(name, parents), (
                    f"{function.name} reads {ast.unparse(parents[name])}: teach auth_lookups")
    assert fetching, "MLflow's auth no longer calls get_run: mlflow_stack/auth_lookups.py can go"


def test_mlflow_auth_still_reads_the_user_more_than_once_per_request():
    source = ast.unparse(_auth_module_tree())
    assert "store.get_user(username).is_admin" in source, \
        "sender_is_admin changed: check whether auth_lookups' per-request user still helps"


def test_a_runs_experiment_is_looked_up_once_and_missing_runs_raise_every_time():
    calls = []

    def lookup(run_id):
        calls.append(run_id)
        if run_id == "gone":
            raise LookupError(run_id)
        return "7"

    experiment_of = _remembered(lookup, size=2)
    assert [experiment_of(r) for r in ("a", "a", "b", "c", "a")] == ["7"] * 5
    assert calls == ["a", "b", "c", "a"]  # "a" was forgotten when "c" came in
    for _ in range(2):
        with pytest.raises(LookupError):
            experiment_of("gone")
    assert calls.count("gone") == 2


def test_the_lean_store_answers_get_run_and_passes_everything_else_on():
    class Store:
        def get_experiment(self, experiment_id):
            return f"experiment {experiment_id}"

    lean = _AuthTrackingStore(Store(), _remembered(lambda run_id: "3"))
    assert lean.get_run("r1").info.experiment_id == "3"
    assert lean.get_experiment("3") == "experiment 3"


def test_a_user_is_read_once_per_request_and_again_in_the_next():
    reads = []

    def get_user(name):
        reads.append(name)
        return {"name": name, "read": len(reads)}

    get_user_once = _once_per_request(get_user)
    app = flask.Flask(__name__)
    with app.test_request_context("/"):
        assert get_user_once("alice") is get_user_once("alice")
        get_user_once("bob")
    with app.test_request_context("/"):
        assert get_user_once("alice")["read"] == 3
    assert get_user_once("alice")["read"] == 4  # outside a request: no memory at all
    assert reads == ["alice", "bob", "alice", "alice"]

"""Guards what the chart's single job runner relies on in MLflow (serve.py, app.py).

With MLFLOW_JOB_RUNNER=elsewhere the server process is started with
MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false, so MLflow launches no job runner, and each worker
sets it back to true so submit_job still queues jobs for the one runner. That holds only
while (1) `mlflow server` decides on the runner from that variable in its own process,
(2) submit_job reads it at call time, and (3) the runner's start-up still resets other
runners' jobs (the reason for all this: once MLflow stops doing that, or gives a setting
for "queue but do not run", the switch should go)."""

import inspect


def test_the_server_process_launches_the_runner_only_when_job_execution_is_on():
    from mlflow.server import _run_server

    source = inspect.getsource(_run_server)
    check = source.index("MLFLOW_SERVER_ENABLE_JOB_EXECUTION.get()")
    assert check < source.index("_launch_job_execution_runner(")


def test_submit_job_reads_the_flag_at_every_call():
    from mlflow.server.jobs import submit_job

    assert "MLFLOW_SERVER_ENABLE_JOB_EXECUTION.get()" in inspect.getsource(submit_job)


def test_mlflow_still_says_its_job_runner_is_for_one_server_only():
    import mlflow.environment_variables

    # Beside MLFLOW_SERVER_JOB_EXECUTION_ENGINE; _recover_orphaned_executor_jobs resets jobs
    # by creation time only. When this sentence goes, check whether the switch can go too.
    assert "supports only single-replica" in inspect.getsource(mlflow.environment_variables)

"""A model goes from a laptop into the registry and comes back by alias."""

import time

import mlflow
import pandas as pd
from mlflow import MlflowClient


class AddOne(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input["x"] + 1


def test_log_register_alias_and_load_champion(stack, admin, as_user):
    as_user(*admin)
    name = f"add-one-{time.time_ns()}"
    mlflow.set_experiment(f"registry-{time.time_ns()}")
    example = pd.DataFrame({"x": [1.0, 2.0]})
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model", python_model=AddOne(), input_example=example,
            registered_model_name=name, pip_requirements=["pandas"],
        )
    client = MlflowClient()
    version = str(info.registered_model_version)
    client.set_registered_model_alias(name, "champion", version)
    assert client.get_model_version_by_alias(name, "champion").version == version

    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    assert list(model.predict(pd.DataFrame({"x": [41.0]}))) == [42.0]

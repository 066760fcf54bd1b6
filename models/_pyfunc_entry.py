"""MLflow models-from-code entry: the pyfunc is defined by code, not a pickled object."""

import mlflow

from models.pyfunc import ForecasterModel

mlflow.models.set_model(ForecasterModel())

-- the MLflow server's backend store, beside the Optuna database made by POSTGRES_DB
CREATE DATABASE mlflow;

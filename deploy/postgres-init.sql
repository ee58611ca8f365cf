-- The MLflow server's database beside Dagster's (POSTGRES_DB) in the same Postgres instance.
CREATE DATABASE mlflow;

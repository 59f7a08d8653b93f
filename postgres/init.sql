-- Runs on every start (see entrypoint.sh); every statement is idempotent.
-- The password is read by psql from the secret file, so it never appears in argv or logs.
\set password `cat :'password_file'`
SELECT 'CREATE ROLE mlflow LOGIN'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mlflow') \gexec
ALTER ROLE mlflow WITH LOGIN PASSWORD :'password';
SELECT 'CREATE DATABASE mlflow OWNER mlflow'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'mlflow') \gexec
SELECT 'CREATE DATABASE mlflow_auth OWNER mlflow'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'mlflow_auth') \gexec

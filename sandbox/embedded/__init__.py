"""LocalStack on the host, from the project's venv: no Docker engine needed."""

"""LocalStack Lambda without Docker: each execution environment is a local process.

`plugin.py` registers the executor with LocalStack, `executor.py` runs inside LocalStack and
manages one process per execution environment, `python_runtime.py` (and `node_runtime.js`)
run inside that process, and `protocol.py` is what they say to each other.
"""

"""A function that reports what its execution environment looks like, for executor tests.

Event: {"sleep": seconds, "fail": message, "print": text, "spawn": true}
(all optional): "spawn" starts a child process that outlives the call unless it is ended.
"""

import os
import subprocess
import sys
import time

STARTED = time.time()  # differs per execution environment: a cold start makes a new one


def handler(event, context):
    if event.get("print"):
        print(event["print"])
    if event.get("spawn"):
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        print(f"child pid {child.pid}")
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("fail"):
        raise ValueError(event["fail"])
    return {
        "pid": os.getpid(),
        "started": STARTED,
        "aws_request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "endpoint": os.environ.get("AWS_ENDPOINT_URL"),
        "has_credentials": bool(os.environ.get("AWS_ACCESS_KEY_ID")),
        "custom": os.environ.get("CUSTOM"),
    }

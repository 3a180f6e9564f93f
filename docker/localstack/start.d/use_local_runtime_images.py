"""LocalStack start hook (docker-compose.yml mounts it in /etc/localstack/init/start.d; LocalStack
execs start.d Python scripts in its own process as it starts: runtime/init.py).

LocalStack 4.14 pulls a function's runtime image each time it prepares a function
(docker_runtime_executor.prepare_version -> _ensure_runtime_image_present -> pull_image), even
when the image is already here; offline that pull fails and the function ends Failed. After
`make pull` the images are here: use them, and pull only what is missing.
"""

from localstack.services.lambda_.invocation import docker_runtime_executor
from localstack.utils.container_utils.container_client import NoSuchImage

pull_when_missing = docker_runtime_executor._ensure_runtime_image_present


def use_local_image_first(image, platform):
    try:
        docker_runtime_executor.CONTAINER_CLIENT.inspect_image(image, pull=False)
    except NoSuchImage:
        pull_when_missing(image, platform)


docker_runtime_executor._ensure_runtime_image_present = use_local_image_first

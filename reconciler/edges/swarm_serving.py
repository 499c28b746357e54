"""Serving a trained model on a swarm: one service per project, on the manager's own node.

Decision: the server goes where a swarm run's aggregator went, on the node of the manager the
reconciler talks to, with its port published in host mode (an ephemeral port on that node):
the swarm's routing mesh is not needed (and not there on every site), and the address is the
manager's, which the reconciler already reaches. The swarm restarts the task when it exits and
replaces it when the image's HEALTHCHECK fails; a restart may change the port, which the next
resync finds out (``GET /health`` fails) and then serves again.
"""

from __future__ import annotations

import contextlib
import time

from python_on_whales import DockerClient
from python_on_whales.exceptions import DockerException
from python_on_whales.utils import run

from reconciler.core.config import Config
from reconciler.edges.backend import BackendError
from reconciler.edges.docker_errors import last_line
from reconciler.edges.serving import (
    HEALTHY_WITHIN,
    SERVER_PORT,
    SERVING_LABEL,
    answers_health,
    server_url,
    wait_healthy,
)
from reconciler.edges.swarm_backend import ENDED, poll_pauses, read_tasks, task_state

TASK_LABEL = "com.docker.swarm.task.id"


class SwarmServing:
    """Model servers as swarm services, created and found through the manager."""

    def __init__(self, config: Config) -> None:
        self.manager = config.swarm_manager

    def serve(self, project: str, image: str, aggregator: str) -> str:
        self.remove(project, aggregator)
        docker = DockerClient(host=self.manager.docker_host)
        name = f"flops-serve-{project}"
        try:
            swarm = docker.info().swarm
            node = str(swarm.node_id) if swarm is not None and swarm.node_id else ""
            if not node:
                raise BackendError(f"{self.manager.name} is not a node of a swarm (backend = "
                                   "\"swarm\" talks to a manager)")
            run([*docker.client_config.docker_cmd, "service", "create", "--detach", "--quiet",
                 "--name", name, "--label", f"{SERVING_LABEL}={project}",
                 "--label", f"flops.project={project}",
                 "--container-label", f"{SERVING_LABEL}={project}",
                 "--constraint", f"node.id=={node}", "--restart-condition", "any",
                 "--publish", f"mode=host,target={SERVER_PORT}", "--no-resolve-image", image])
            container = self._running_container(docker, name)
        except DockerException as error:
            raise BackendError(f"cannot start the model server service through "
                               f"{self.manager.name}: {last_line(error)}") from None
        url = server_url(docker, self.manager, container)
        wait_healthy(url)
        return url

    def _running_container(self, docker: DockerClient, name: str) -> str:
        """The id of the service's started task's container on the manager's engine. A task
        of an image with a HEALTHCHECK stays "starting" until the swarm's first check passes
        (15 s in); its /health is asked directly instead, as soon as it answers."""
        deadline = time.monotonic() + HEALTHY_WITHIN
        pauses = poll_pauses()
        while time.monotonic() < deadline:
            tasks = read_tasks(docker, name)
            for task in tasks:
                state = task_state(task)
                if state in ENDED and state != "shutdown" and task.status is not None \
                        and task.status.err:
                    raise BackendError(f"the model server's task is {state}: {task.status.err}")
                if state in ("starting", "running"):
                    found = docker.container.list(filters={"label": f"{TASK_LABEL}={task.id}"})
                    if found:
                        return found[0].id
            time.sleep(next(pauses))
        raise BackendError(f"the model server service {name} had no running task within "
                           f"{HEALTHY_WITHIN:g}s")

    def remove(self, project: str, aggregator: str) -> None:
        docker = DockerClient(host=self.manager.docker_host)
        try:
            found = docker.service.list(filters={"label": f"{SERVING_LABEL}={project}"})
            if found:
                docker.service.remove([service.id for service in found])
        except DockerException as error:
            raise BackendError(f"cannot remove the model server service through "
                               f"{self.manager.name}: {last_line(error)}") from None
        # The swarm stops the task in the background; its container goes with it.
        with contextlib.suppress(DockerException):
            left = docker.container.list(all=True,
                                         filters={"label": f"{SERVING_LABEL}={project}"})
            if left:
                docker.container.remove(left, force=True)

    def healthy(self, url: str) -> bool:
        return answers_health(url)

"""The container target: the serve image run through the Docker API (podman's or Docker's).

Health, version, hot swap (/admin/load), smoke test and rollback are the local target's, over
HTTP; only starting and stopping the server differ: a container on the host network instead of
a process. The container reads an object store (a container does not see this machine's
folders): the pipeline's, or its own (`store`, where publishing copies each version). The
store's credentials reach it as environment from a credentials block, never through the image.

The engine restarts a server that crashes (restart policy on-failure, `max_restarts` times), as
a cloud's orchestrator would. A server that is not healthy yet when it exits for good, keeps
crashing, or cannot be started at all fails the start with its exit code, restart count and the
end of its log, and the container is removed.
"""
from __future__ import annotations

import json
import os
import shlex
import time
from typing import Any

from cloudhop.providers.local.target import LocalTarget
from cloudhop.targets.base import TargetError

__all__ = ["ContainerTarget", "from_spec", "env_from_block", "DEFAULT_IMAGE"]

DEFAULT_IMAGE = "localhost/cloudhop-serve:dev"  # `python -m ops.images build`
LOG_LINES = 30  # of a server that failed to start, in the error
_ENV = {"aws_access_key_id": "AWS_ACCESS_KEY_ID", "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY",
        "aws_session_token": "AWS_SESSION_TOKEN", "region_name": "AWS_DEFAULT_REGION"}


def env_from_block(block: dict[str, Any]) -> dict[str, Any]:
    """A target's secrets from an AwsCredentials block: the container's AWS_* environment."""
    return {env: block[field] for field, env in _ENV.items() if block.get(field)}


def _s3_keys(env: dict[str, Any]) -> dict[str, Any]:
    """s3fs options from the AWS_* environment of `env_from_block`: how this side writes the store."""
    names = {"AWS_ACCESS_KEY_ID": "key", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_SESSION_TOKEN": "token"}
    return {opt: env[var] for var, opt in names.items() if env.get(var)}


def _docker(base_url: str | None):
    try:
        import docker
    except ImportError as e:
        from cloudhop.providers import get, missing_extra

        raise TargetError(missing_extra(get("container"), e)) from None
    # mypy takes the repository's docker/ folder (Dockerfiles) for this package; Python does not
    return docker.DockerClient(base_url=base_url) if base_url else docker.from_env()  # type: ignore[attr-defined]


class ContainerTarget(LocalTarget):
    """Serves a model with the serve image's `python -m cloudhop.serving`, in container
    `cloudhop-serve-<model>-<name>` (keyed by model and target, as a local target's state files are)."""

    kind = "container"

    def __init__(self, name: str, store_uri: str, model: str, *, image: str = DEFAULT_IMAGE,
                 docker_host: str | None = None, command: list[str] | None = None,
                 secrets: dict[str, Any] | None = None, max_restarts: int = 3,
                 store_options: dict[str, Any] | None = None, **options: Any):
        if "://" not in store_uri or store_uri.startswith("file://"):
            raise TargetError(f"target {name}: store {store_uri!r} is a folder of this machine, which a "
                              f"container cannot see; serve from an object store (s3://, gs://, az://)")
        if int(max_restarts) < 0:
            raise TargetError(f"targets.{name}.options.max_restarts must be 0 or more, got {max_restarts}")
        self.secrets = dict(secrets or {})
        # The server opens the store with these; its keys come as AWS_* environment. This side
        # (publish) opens it with the same keys as s3fs options.
        self.server_store_options = dict(store_options or {})
        keys = _s3_keys(self.secrets) if store_uri.startswith("s3://") else {}
        super().__init__(name, store_uri, model, store_options={**self.server_store_options, **keys}, **options)
        self.image, self.command, self.max_restarts = image, command, int(max_restarts)
        self.docker_host = docker_host or os.environ.get("DOCKER_HOST")
        self.container_name = f"cloudhop-serve-{model}-{name}"

    def __repr__(self) -> str:
        return f"ContainerTarget({self.name!r}, {self.image}, {self.url})"

    def _container(self, client):
        import docker.errors

        try:
            return client.containers.get(self.container_name)
        except docker.errors.NotFound:
            return None

    def _fail(self, client, cmd: list[str], why: str) -> TargetError:
        """The error for a server that did not start: its command, what the engine says of its
        container (state, exit code, restarts) and the end of its log; the container is removed."""
        head = f"target {self.name}: container {self.container_name} ({self.image}) {why}"
        container = self._container(client)
        if container is None:
            return TargetError(f"{head}; command: {shlex.join(cmd)}")
        status, code, restarts = _state(container)
        logs = container.logs(tail=LOG_LINES).decode(errors="replace").rstrip()
        self._remove(client)
        state = "it never ran" if status == "created" else f"{status}, exit code {code}"
        return TargetError(f"{head}: {state}, restarted {restarts} time{'s' * (restarts != 1)}; "
                           f"command: {shlex.join(cmd)}. The last lines of its log:\n{logs or '(empty)'}")

    def _remove(self, client) -> None:
        container = self._container(client)
        if container is not None:
            container.remove(force=True)

    def ensure_running(self, version: str) -> None:
        """Start the serve container at `version` unless a healthy server already answers on the port."""
        if self.health().get("status") == "ok":
            return super().ensure_running(version)  # checks it serves this model
        import docker.errors

        client = _docker(self.docker_host)
        try:
            self._remove(client)  # a stopped or crashed one from before
            cmd = self.command or ["python", "-m", "cloudhop.serving", "--store", self.store_uri, "--model",
                                   self.model, "--version", str(version), "--host", self.host, "--port",
                                   str(self.port), "--target-name", self.name, *self.server_args]
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._new_server_token()  # kept in the state folder (0600) for this side's requests
            # The container's user cannot read a root-owned 0600 file, so the token goes in as its
            # environment, which only the engine's API (root) shows; never on the command line.
            env = {**self.secrets, "CLOUDHOP_ADMIN_TOKEN": self.admin_token}
            if self.server_store_options:
                env["CLOUDHOP_STORE_OPTIONS"] = json.dumps(self.server_store_options)
            try:
                client.containers.run(self.image, cmd, name=self.container_name, detach=True, network_mode="host",
                                      environment=env, restart_policy={"Name": "on-failure",
                                                                       "MaximumRetryCount": self.max_restarts})
            except docker.errors.ImageNotFound:
                raise TargetError(f"target {self.name}: image {self.image} is not on this machine "
                                  f"(build it: python -m ops.images build)") from None
            except docker.errors.APIError as e:  # e.g. a command that is not in the image
                raise self._fail(client, cmd, f"could not be started ({e.explanation or e})") from None
            self._wait_healthy(client, cmd)
        finally:
            client.close()

    def _wait_healthy(self, client, cmd: list[str]) -> None:
        """Until the server answers /health; a container that exited for good (its restarts spent,
        or a clean exit the policy does not restart) or is gone fails at once."""
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.health().get("status") == "ok":
                return
            container = self._container(client)
            if container is None:
                raise TargetError(f"target {self.name}: container {self.container_name} was removed while it started")
            status, code, restarts = _state(container)
            # podman says "stopped" between a crash and its restart, "exited" once it gives up
            if status in ("exited", "stopped", "dead") and (restarts >= self.max_restarts or code == 0):
                why = "kept crashing before it was healthy" if restarts else "exited before it was healthy"
                raise self._fail(client, cmd, why)
            time.sleep(0.2)
        raise self._fail(client, cmd, f"was not healthy on {self.url} within {self.start_timeout:.0f}s")

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop and remove the serve container (SIGTERM first: the server flushes its prediction log)."""
        client = _docker(self.docker_host)
        try:
            container = self._container(client)
            if container is None:
                return False
            running = container.status == "running"
            if running:
                container.stop(timeout=int(timeout))
            container.remove(force=True)
            return running
        finally:
            client.close()


def _state(container) -> tuple[str, int | None, int]:
    """(status, last exit code, restarts so far) of a container, as the engine sees it now."""
    container.reload()
    attrs = container.attrs
    return container.status, attrs.get("State", {}).get("ExitCode"), int(attrs.get("RestartCount") or 0)


_OPTIONS = {"port", "host", "state_dir", "start_timeout", "server_args", "image", "docker_host", "command",
            "max_restarts", "store", "store_options", "credentials"}


def from_spec(spec_target: Any, spec: Any, secrets: dict[str, Any] | None = None) -> ContainerTarget:
    """A ContainerTarget from a ServingTargetSpec (options: port, image, docker_host, command,
    start_timeout, max_restarts, server_args, state_dir; store and store_options: an object store
    of its own, default the pipeline's; credentials: an AwsCredentials block whose keys become the
    container's environment)."""
    unknown = set(spec_target.options) - _OPTIONS
    if unknown:
        raise TargetError(f"targets.{spec_target.name}.options: unknown option(s) {sorted(unknown)} for a "
                          f"container target; known: {sorted(_OPTIONS)}")
    options = {k: v for k, v in spec_target.options.items() if k not in ("credentials", "store", "store_options")}
    store = spec_target.options.get("store", spec.store)
    store_options = spec_target.options.get("store_options", spec.store_options if store == spec.store else {})
    return ContainerTarget(spec_target.name, store, spec.name, store_options=store_options, secrets=secrets,
                           **options)

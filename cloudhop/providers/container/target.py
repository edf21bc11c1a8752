"""The container target: the serve image run through the Docker API (podman's or Docker's).

Health, version, hot swap (/admin/load), smoke test and rollback are the local target's, over
HTTP; only starting and stopping the server differ: a container on the host network instead of
a process. The container reads the pipeline's store, which must be an object store (a
container does not see this machine's folders); the store's credentials reach it as
environment from a credentials block, never through the image.
"""
from __future__ import annotations

import json
import os
import time
from typing import Any

from cloudhop.providers.local.target import LocalTarget
from cloudhop.targets.base import TargetError

__all__ = ["ContainerTarget", "from_spec", "env_from_block", "DEFAULT_IMAGE"]

DEFAULT_IMAGE = "localhost/cloudhop-serve:dev"  # `python -m ops.images build`
_ENV = {"aws_access_key_id": "AWS_ACCESS_KEY_ID", "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY",
        "aws_session_token": "AWS_SESSION_TOKEN", "region_name": "AWS_DEFAULT_REGION"}


def env_from_block(block: dict[str, Any]) -> dict[str, Any]:
    """A target's secrets from an AwsCredentials block: the container's AWS_* environment."""
    return {env: block[field] for field, env in _ENV.items() if block.get(field)}


def _docker(base_url: str | None):
    try:
        import docker
    except ImportError as e:
        from cloudhop.providers import get, missing_extra

        raise TargetError(missing_extra(get("container"), e)) from None
    # mypy takes the repository's docker/ folder (Dockerfiles) for this package; Python does not
    return docker.DockerClient(base_url=base_url) if base_url else docker.from_env()  # type: ignore[attr-defined]


class ContainerTarget(LocalTarget):
    """Serves a model with the serve image's `python -m cloudhop.serving`, in container `cloudhop-serve-<name>`."""

    kind = "container"

    def __init__(self, name: str, store_uri: str, model: str, *, image: str = DEFAULT_IMAGE,
                 docker_host: str | None = None, command: list[str] | None = None,
                 secrets: dict[str, Any] | None = None, **options: Any):
        if "://" not in store_uri or store_uri.startswith("file://"):
            raise TargetError(f"target {name}: store {store_uri!r} is a folder of this machine, which a "
                              f"container cannot see; serve from an object store (s3://, gs://, az://)")
        super().__init__(name, store_uri, model, **options)
        self.image, self.command, self.secrets = image, command, dict(secrets or {})
        self.docker_host = docker_host or os.environ.get("DOCKER_HOST")
        self.container_name = f"cloudhop-serve-{name}"

    def __repr__(self) -> str:
        return f"ContainerTarget({self.name!r}, {self.image}, {self.url})"

    def _container(self, client):
        import docker.errors

        try:
            return client.containers.get(self.container_name)
        except docker.errors.NotFound:
            return None

    def _fail(self, client, container, why: str) -> TargetError:
        logs = container.logs(tail=30).decode(errors="replace") if container is not None else ""
        self._remove(client)
        return TargetError(f"target {self.name}: container {self.container_name} ({self.image}) {why}. "
                           f"Its log:\n{logs or '(empty)'}")

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
            if self.store_options:
                env["CLOUDHOP_STORE_OPTIONS"] = json.dumps(self.store_options)
            try:
                container = client.containers.run(self.image, cmd, name=self.container_name, detach=True,
                                                  network_mode="host", environment=env)
            except docker.errors.ImageNotFound:
                raise TargetError(f"target {self.name}: image {self.image} is not on this machine "
                                  f"(build it: python -m ops.images build)") from None
            except docker.errors.APIError as e:
                raise TargetError(f"target {self.name}: the engine refused to start {self.image}: {e}") from None
            deadline = time.monotonic() + self.start_timeout
            while time.monotonic() < deadline:
                container.reload()
                if container.status in ("exited", "dead"):
                    code = container.attrs.get("State", {}).get("ExitCode")
                    raise self._fail(client, container, f"exited with code {code} before it was healthy")
                if self.health().get("status") == "ok":
                    return
                time.sleep(0.2)
            raise self._fail(client, container, f"was not healthy on {self.url} within {self.start_timeout:.0f}s")
        finally:
            client.close()

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


_OPTIONS = {"port", "host", "start_timeout", "server_args", "image", "docker_host", "command", "credentials"}


def from_spec(spec_target: Any, spec: Any, secrets: dict[str, Any] | None = None) -> ContainerTarget:
    """A ContainerTarget from a ServingTargetSpec (options: port, image, docker_host, command,
    start_timeout, server_args, credentials: an AwsCredentials block whose keys become the
    container's environment)."""
    unknown = set(spec_target.options) - _OPTIONS
    if unknown:
        raise TargetError(f"targets.{spec_target.name}.options: unknown option(s) {sorted(unknown)} for a "
                          f"container target; known: {sorted(_OPTIONS)}")
    options = {k: v for k, v in spec_target.options.items() if k != "credentials"}
    return ContainerTarget(spec_target.name, spec.store, spec.name, store_options=spec.store_options,
                           secrets=secrets, **options)

"""Ops: the code that runs cloudhop's own processes on one machine.

The local Prefect server (`ops.localserver`), the closed-loop walk-through (`ops.loop`),
Prefect workers (`ops.workers`), project deployment (`ops.deploy`), the storage emulators
(`ops.services`), an inference server process (`ops.serving`) and the small process and
network helpers they share (`ops.procs`, `ops.net`); the container engine (`ops.engine`: podman
and its Docker API) and the two images (`ops.images`, with `ops.image_requirements`, which the
train image's build runs to key its dependency layer). The scripts, the tests and the
benchmarks all start processes through here, so each is written once.

This layer sits beside `flows/` and `tasks/`: it may import Prefect, `flows` and `cloudhop`;
the library never imports it.
"""

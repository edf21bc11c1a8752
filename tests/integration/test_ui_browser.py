"""The Prefect UI in a real browser: Debian's Chromium, headless, driven by Playwright.

A person's way to retrain: the `retrain` deployment's Run > Custom run form, filled in with other
parameters (a small spec, max epochs, a window), submitted in the UI and run by a real `process`
worker on the `local` pool. The run page's Artifacts tab then shows the summary and the
validation table; a run on bad data shows the table of failed expectations instead.

Screenshots of every step go to the module's folder under pytest's base temp,
`<basetemp>/ui-browser0/screenshots/` (`pytest --basetemp DIR` puts them somewhere known); the
path is printed at the end of each test.
"""
from __future__ import annotations

import copy
import re
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import pytest
import yaml

from ops.localserver import prefect_env
from ops.procs import ROOT, stop
from ops.workers import start_worker

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (scripts/setup installs it as root)")]

MODEL = "ui-flights"
WINDOW = {"train_start": "2013-03-01", "validation_start": "2013-06-01", "holdout_start": "2013-07-01",
          "holdout_end": "2013-08-01"}
RUN_TIMEOUT_S = 150


class UI:
    """The browser page, the UI's address, and a numbered screenshot per step."""

    def __init__(self, page, base: str, shots: Path, deployment_id: str, server_logs: list[Path]):
        self.page, self.base, self.shots, self.deployment_id = page, base, shots, deployment_id
        self.server_logs = server_logs
        self.n = 0
        self.bad_answers: list = []  # responses, read only when a step fails
        self.console: list[str] = []
        page.on("response", lambda r: r.status >= 400 and self.bad_answers.append(r))
        page.on("console", lambda m: m.type == "error" and self.console.append(m.text[:300]))

    def shot(self, step: str) -> None:
        self.n += 1
        self.page.screenshot(path=str(self.shots / f"{self.n:02d}-{step}.png"), full_page=True)

    def custom_run(self, step: str, fill: Callable[["UI"], None]) -> datetime:
        """Open the deployment, Run > Custom run, `fill` the parameter form, submit; returns when."""
        page = self.page
        page.goto(f"{self.base}/deployments/deployment/{self.deployment_id}")
        page.get_by_role("button", name="Run", exact=True).click()
        page.get_by_text("Custom run").click()
        page.wait_for_url(re.compile(r".*/run(\?.*)?$"))
        self.prop("spec").wait_for()
        self.shot(f"{step}-form")
        fill(self)
        self.shot(f"{step}-form-filled")
        page.keyboard.press("Tab")  # leave the last field, so the form holds its value before the submit
        t0 = datetime.now(timezone.utc)
        page.get_by_role("button", name="Submit").click()
        # The UI goes to the deployment's page and then, by itself, to its Runs tab (`?tab=Runs`): under
        # load the check can first look after that second step, so the address may carry a query.
        try:
            page.wait_for_url(re.compile(rf".*/deployments/deployment/{self.deployment_id}(\?.*)?$"), timeout=60_000)
        except Exception as e:
            self.shot(f"{step}-not-submitted")  # what the form said instead
            raise AssertionError(f"the form did not submit: {e}\n{self.diagnosis()}") from None
        self.shot(f"{step}-submitted")
        return t0

    def diagnosis(self) -> str:
        """What the page and the server said: the URL, toasts and error texts on the page, the API's
        answers of 400 and up, the browser console's errors (a screenshot does not reach a CI log)."""
        page = self.page
        texts = [t.strip() for sel in (".p-toast", "[class*=error]", "[class*=invalid]")
                 for t in page.locator(sel).all_inner_texts() if t.strip()]
        answers = [f"{r.request.method} {r.url} {r.status} {_body(r)}" for r in self.bad_answers[-20:]]
        server = [line for log in self.server_logs for line in log.read_text(errors="replace").splitlines()
                  if "ERROR" in line or "Traceback" in line or "locked" in line]
        return "\n".join([f"url: {page.url}", f"page says: {texts[:20]}",
                          f"API answers >= 400: {answers}", f"console errors: {self.console[-20:]}",
                          "server log errors:", *server[-20:]])

    # -- the parameter form: one block per parameter, named by it ("max_epochs (Optional)") ----------
    def prop(self, name: str):
        label = self.page.locator(".schema-form-property__label",
                                  has_text=re.compile(rf"^{re.escape(name)}( \(Optional\))?$"))
        return self.page.locator(".schema-form-property").filter(has=label).last  # the innermost

    def choose(self, name: str, kind: str) -> None:
        """Pick the type of an optional parameter (its buttons: int | None, Window | None, ...)."""
        self.prop(name).locator(".p-button-group").first.get_by_role("button", name=kind, exact=True).click()

    def type_in(self, name: str, kind: str, value: str) -> None:
        self.choose(name, kind)
        self.prop(name).locator("input, textarea").first.fill(value)

    def pick_date(self, name: str, iso: str) -> None:
        """The date picker: open it, type the date in its field, Apply."""
        self.choose(name, "date")
        self.prop(name).locator(".p-date-button__control").click()
        self.page.locator("input[type=date]").last.fill(iso)
        self.page.get_by_role("button", name="Apply").click()

    def open_run(self, run_id: str, state: str, step: str) -> None:
        """The run page once its state badge says `state`."""
        page = self.page
        page.goto(f"{self.base}/runs/flow-run/{run_id}")
        page.get_by_text(state, exact=True).first.wait_for(timeout=30_000)
        self.shot(f"{step}-{state.lower()}")

    def open_artifact(self, key: str, step: str, *expect: str | re.Pattern, search: str | None = None) -> None:
        """On the run's Artifacts tab, open the artifact `key` (a table: `search` it) and see each of
        `expect` in it; then back to the run."""
        page = self.page
        page.get_by_text("Artifacts", exact=True).click()
        cards = page.locator(".flow-run-artifacts")
        cards.get_by_text(key, exact=True).wait_for()
        self.shot(f"{step}-artifacts")
        cards.get_by_text(key, exact=True).click()
        if search:
            page.get_by_placeholder("Search").fill(search)
        for text in expect:
            page.get_by_text(text).first.wait_for()
        self.shot(f"{step}-{key}")
        page.go_back()


def _body(response) -> str:
    try:
        return response.text()[:300]
    except Exception as e:  # a body the browser no longer holds
        return f"(body gone: {e})"


@pytest.fixture(scope="module")
def ui(tmp_path_factory, prefect_api_url, deployed, flights_columns):
    from cloudhop.data import flights_table

    root = tmp_path_factory.mktemp("ui-browser")
    flights = flights_table().iloc[::30][list(flights_columns)].reset_index(drop=True)  # ~11k rows, all year
    flights.to_parquet(root / "flights.parquet")
    bad = flights.copy()
    bad.loc[:24, "month"] = 13
    bad.loc[:4, "origin"] = "XXX"
    bad.to_parquet(root / "bad.parquet")
    spec = copy.deepcopy(yaml.safe_load((ROOT / "specs" / "flights.yaml").read_text()))
    spec.update(name=MODEL, dataset={"uri": str(root / "flights.parquet")}, columns=flights_columns,
                store=str(root / "store"), targets=[])
    spec["model"].update(hidden=[32, 16], max_epochs=6, checkpoint_every=50)
    spec["drift"]["sample_size"] = 2000
    (root / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))

    env = prefect_env(prefect_api_url, home=root / "worker-home")
    env["PREFECT_WORKER_QUERY_SECONDS"] = "1"
    worker = start_worker("local", root / "worker.log", env, cwd=root)
    shots = root / "screenshots"
    shots.mkdir()
    base = prefect_api_url[: -len("/api")]
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.set_default_timeout(20_000)
            server_logs = list(tmp_path_factory.getbasetemp().glob("prefect*/prefect-server.log"))
            ui = UI(page, base, shots, str(deployed["deployments"]["retrain"].id), server_logs)
            yield {"ui": ui, "root": root,
                   "worker_log": root / "worker.log"}
            browser.close()
    finally:
        stop(worker)
        print(f"screenshots: {shots}")


def _run_after(t0: datetime, deployment_id: str):
    """The run of the deployment created at or after t0 (the one the form just asked for)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter

    with get_client(sync_client=True) as c:
        runs = c.read_flow_runs(deployment_filter=DeploymentFilter(id={"any_": [deployment_id]}))
    runs = [r for r in runs if r.created and r.created >= t0.replace(microsecond=0)]
    assert len(runs) == 1, [(r.name, r.created) for r in runs]
    return runs[0]


def _wait_final(run_id, worker_log: Path):
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + RUN_TIMEOUT_S
    with get_client(sync_client=True) as c:
        while True:
            run = c.read_flow_run(run_id)
            if run.state and run.state.is_final():
                return run
            if time.monotonic() > deadline:
                tail = worker_log.read_text(errors="replace")[-3000:]
                raise AssertionError(f"run {run.name} still {run.state.type if run.state else '?'} after "
                                     f"{RUN_TIMEOUT_S}s; worker log:\n{tail}")
            time.sleep(1)


def test_a_custom_run_from_the_ui_completes_on_the_worker(ui):
    u, root = ui["ui"], ui["root"]
    u.page.goto(u.base)
    u.page.get_by_text("Dashboard").first.wait_for()
    u.shot("ui")

    def fill(form: UI) -> None:
        form.type_in("spec", "str", str(root / "spec.yaml"))
        form.type_in("max_epochs", "int", "1")
        form.choose("window", "Window")
        for field, day in WINDOW.items():
            form.pick_date(field.replace("_", " ").title(), day)

    t0 = u.custom_run("retrain", fill)
    run = _run_after(t0, u.deployment_id)
    assert run.parameters["max_epochs"] == 1 and run.parameters["window"] == WINDOW, run.parameters
    run = _wait_final(run.id, ui["worker_log"])
    assert run.state.is_completed(), f"{run.state.type}: {run.state.message}"
    u.open_run(str(run.id), "Completed", "retrain")
    # whether it was promoted is the evaluation's business, not this test's
    u.open_artifact(f"{MODEL}-summary", "retrain", re.compile(rf"^{MODEL} v1 \((not )?promoted\)$"), "baseline")
    u.open_artifact(f"{MODEL}-validation", "retrain", "Validation passed", "expect_column_values_to_be_in_set",
                    "passed", search="origin")


def test_a_run_on_bad_data_shows_the_failed_expectations(ui):
    u, root = ui["ui"], ui["root"]

    def fill(form: UI) -> None:
        form.type_in("spec", "str", str(root / "spec.yaml"))
        form.type_in("dataset_uri", "str", str(root / "bad.parquet"))

    t0 = u.custom_run("bad-data", fill)
    run = _wait_final(_run_after(t0, u.deployment_id).id, ui["worker_log"])
    assert run.state.is_failed(), f"{run.state.type}: {run.state.message}"
    u.open_run(str(run.id), "Failed", "bad-data")
    u.open_artifact(f"{MODEL}-validation-failures", "bad-data", "Validation failed: 2 of",
                    "expect_column_values_to_be_between", "expect_column_values_to_be_in_set", "'XXX'")

"""Alerts as Prefect automations: `python -m flows.alerts apply|remove`.

  apply [--url URL] [--allow-private]   write the webhook block (a Custom Webhook notification
                                        block, the URL kept as its secret) and create or update one
                                        automation per alert of deployments/alerts.yaml
  remove                                delete those automations (the block stays)

The URL comes from --url or $CLOUDHOP_ALERT_WEBHOOK_URL; without either, an existing block of
the file's name is used, and with no block at all nothing is applied (said so, exit 0: the demo
runs it on every machine). Private, loopback and link-local addresses are refused before any
connection unless --allow-private (a receiver on this machine). Against PREFECT_API_URL.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence
from uuid import UUID

import httpx
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.events.actions import SendNotification
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.settings import PREFECT_API_URL

from cloudhop.events import Alert, Alerts, AlertsError, load_alerts
from cloudhop.guard import webhook_url_problem

DEFAULT_FILE = "deployments/alerts.yaml"
URL_ENV = "CLOUDHOP_ALERT_WEBHOOK_URL"
TAG = "cloudhop-alert"


def save_block(name: str, url: str, allow_private: bool) -> UUID:
    """The webhook block: it POSTs {"subject", "body"} as JSON; the URL (which often carries a
    token) is a secret value, shown obscured in the UI."""
    block = CustomWebhookNotificationBlock(
        name=name, url="{{webhook_url}}", method="POST", json_data={"subject": "{{subject}}", "body": "{{body}}"},
        secrets={"webhook_url": url}, allow_private_urls=allow_private)
    return block.save(name, overwrite=True)


def existing_block(name: str) -> UUID | None:
    try:
        return CustomWebhookNotificationBlock.load(name)._block_document_id
    except ValueError:  # no block of that name
        return None


def automation(alert: Alert, block_id: UUID) -> AutomationCore:
    return AutomationCore(
        name=alert.name, description=alert.description, tags=[TAG],
        trigger=EventTrigger(expect={alert.event}, match={"prefect.resource.id": "cloudhop.model.*", **alert.match},
                             posture=Posture.Reactive, threshold=1, within=0),
        actions=[SendNotification(block_document_id=block_id, subject=alert.subject, body=alert.body)])


def apply(client: SyncPrefectClient, alerts: Alerts, block_id: UUID) -> list[tuple[str, str]]:
    """Create or update each alert's automation (by name); returns (name, created|updated)."""
    done = []
    for alert in alerts.alerts:
        found = client.read_automations_by_name(alert.name)
        if found:
            client.update_automation(found[0].id, automation(alert, block_id))
            for extra in found[1:]:  # left by an older apply: one automation per alert
                client.delete_automation(extra.id)
            done.append((alert.name, "updated"))
        else:
            client.create_automation(automation(alert, block_id))
            done.append((alert.name, "created"))
    return done


def remove(client: SyncPrefectClient, alerts: Alerts) -> int:
    n = 0
    for alert in alerts.alerts:
        for a in client.read_automations_by_name(alert.name):
            client.delete_automation(a.id)
            n += 1
    return n


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flows.alerts", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["apply", "remove"])
    ap.add_argument("--file", default=DEFAULT_FILE, help=f"alerts file (default {DEFAULT_FILE})")
    ap.add_argument("--url", help=f"the webhook to notify (default ${URL_ENV})")
    ap.add_argument("--allow-private", action="store_true",
                    help="allow a private or loopback webhook address (a receiver on this machine)")
    a = ap.parse_args(argv)
    if not PREFECT_API_URL.value():
        print("error: PREFECT_API_URL is not set: point it at a Prefect server", file=sys.stderr)
        return 2
    try:
        alerts = load_alerts(a.file)
        if a.action == "remove":
            with get_client(sync_client=True) as client:
                print(f"removed {remove(client, alerts)} alert automation(s)")
            return 0
        url = a.url or os.environ.get(URL_ENV)
        bad = webhook_url_problem(url, a.allow_private) if url else None
        if bad:
            print(f"error: webhook refused: {bad}", file=sys.stderr)
            return 2
        block_id = save_block(alerts.block, url, a.allow_private) if url else existing_block(alerts.block)
        if block_id is None:
            print(f"alerts: not applied (no webhook: give --url or set {URL_ENV}, or create a Custom Webhook "
                  f"block named {alerts.block!r})")
            return 0
        with get_client(sync_client=True) as client:
            for name, what in apply(client, alerts, block_id):
                print(f"alert {name}: {what}")
        return 0
    except AlertsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except httpx.HTTPError as e:
        print(f"error: Prefect API at {PREFECT_API_URL.value()}: {type(e).__name__}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

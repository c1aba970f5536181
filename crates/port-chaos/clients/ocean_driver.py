"""Drives Ocean's own Port client (port-ocean 0.48.12) against a real portd.

Nothing here reimplements a call: every request is made by port_ocean's `PortClient`
(its authentication, retry transport and mixins), the way Ocean's start-up and its
action-run ExecutionManager and executors make them. The Rust test (tests/ocean.rs)
starts portd, creates two INTEGRATION_ACTION runs for the installation
`my-github-integration` (actions `dispatch` and `busy`), runs this script and checks
what it printed and what portd stored.

Environment: PORT_BASE_URL (no trailing slash), PORT_CLIENT_ID, PORT_CLIENT_SECRET.
Prints one JSON object on stdout; any failed expectation raises (exit code 1).
"""

import asyncio
import json
import os
import sys
from unittest.mock import MagicMock

from port_ocean.clients.port.client import PortClient
from port_ocean.config.settings import SslSettings
from port_ocean.context.ocean import initialize_port_ocean_context, ocean
from port_ocean.core.models import CreatePortResourcesOrigin, ProcessingMode
from port_ocean.exceptions.execution_manager import RunAlreadyAcknowledgedError
from port_ocean.ocean import Ocean

INTEGRATION = "my-github-integration"


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(what)


def standalone_context() -> None:
    """What port_ocean's own smoke-test helper does for a PortClient used outside an
    Ocean app: the HTTP client reads its TLS settings from the Ocean context."""
    if ocean.initialized:
        return
    app = MagicMock(spec=Ocean)
    app.is_saas.return_value = False
    app.config = MagicMock()
    app.config.ssl = SslSettings()
    initialize_port_ocean_context(app)


async def drive() -> dict:
    standalone_context()
    client = PortClient(
        base_url=os.environ["PORT_BASE_URL"],
        client_id=os.environ["PORT_CLIENT_ID"],
        client_secret=os.environ["PORT_CLIENT_SECRET"],
        integration_identifier=INTEGRATION,
        integration_type="github",
        integration_version="0.1.0",
    )
    report: dict = {}

    # The check ExecutionManager makes before it polls at all.
    report["isMachine"] = await client.auth.is_machine_user()
    expect(report["isMachine"] is True, "the token is not a machine token")

    # Start-up (run.py, initialize_defaults).
    missing = await client.get_current_integration(should_raise=False)
    expect(missing == {}, f"an integration exists before creation: {missing}")
    report["provisionEnabled"] = await client.get_provision_enabled_integrations()
    report["featureFlags"] = await client.get_organization_feature_flags()
    created = await client.create_integration(
        "github",
        {},
        None,
        CreatePortResourcesOrigin.Ocean,
        actions_processing_enabled=True,
        incremental_sync_enabled=False,
    )
    expect(created.get("installationId") == INTEGRATION, f"created: {created}")
    patched = await client.patch_integration(processing_mode=ProcessingMode.dsp)
    expect(patched.get("processingMode") == "dsp", f"patched: {patched}")
    current = await client.get_current_integration()
    report["installationType"] = current.get("installationType")
    expect(current.get("actionsProcessingEnabled") is True, f"current: {current}")

    # The poller: both claim routes, `exclude` for an action whose queue is full.
    claimed = await client.claim_pending_runs(
        limit=300,
        visibility_timeout_ms=60000,
        exclude_action_identifiers=["busy"],
    )
    report["claimed"] = [
        {"id": run.id, "action": run.action_identifier, "type": run.action_type}
        for run in claimed
    ]
    expect(len(claimed) == 1, f"claimed {report['claimed']}")
    run = claimed[0]
    expect(run.action_identifier == "dispatch", "the excluded action's run was claimed")
    expect(
        run.execution_properties.get("workflow") == "deploy.yml",
        f"execution properties: {run.execution_properties}",
    )

    # The worker: ack just before executing; a second ack is someone else's run.
    await client.acknowledge_run(run)
    try:
        await client.acknowledge_run(run)
        report["secondAck"] = "accepted"
    except RunAlreadyAcknowledgedError:
        report["secondAck"] = "RunAlreadyAcknowledgedError"
    expect(report["secondAck"] == "RunAlreadyAcknowledgedError", "a second ack was accepted")

    # The executor: started, a log line, completed. This client version has no way to
    # send a statusLabel (post_run_log takes a message and a level only).
    await client.update_run_started(
        run, link="https://github.com/acme/infra/actions/runs/42", external_id="42"
    )
    await client.post_run_log(run, "Dispatched workflow deploy.yml")
    report["statusLabel"] = "not sent by port-ocean 0.48.12"

    # The completion webhook: the run by its external id, then an unknown one (which
    # falls back to the workflow node runs).
    found = await client.find_run_by_external_id("42")
    expect(found is not None and found.id == run.id, f"found {found}")
    report["foundInProgress"] = client.is_run_in_progress(found)
    unknown = await client.find_run_by_external_id("no-such-run")
    report["unknownExternalId"] = None if unknown is None else unknown.id
    await client.report_run_completed(found, success=True, message="Workflow completed")
    after = await client.find_run_by_external_id("42")
    report["finalStatus"] = str(after.status.value if hasattr(after.status, "value") else after.status)

    # The excluded run waits for a later claim; this one fails.
    later = await client.claim_pending_runs(limit=300, visibility_timeout_ms=60000)
    report["laterClaimed"] = [r.action_identifier for r in later]
    for other in later:
        await client.acknowledge_run(other)
        await client.report_run_completed(other, success=False, message="Cancelled by the test")
    return report


def main() -> int:
    report = asyncio.run(drive())
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

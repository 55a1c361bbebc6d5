"""`runtune doctor`: is the deployment (or the local platform) wired the way the code expects?"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from runtune.dev.platform import read_state
from runtune.doctor import Check, all_ok
from runtune.doctor.local import local_checks
from runtune.doctor.probes import DEFAULT_TIMEOUT_S

if TYPE_CHECKING:
    from runtune.doctor.cloud import Deployment

console = Console()


def doctor(
    project: str | None = typer.Option(
        None, help="Check the Cloud Run deployment in this project (default: the running local platform)"
    ),
    region: str = typer.Option("us-central1", help="The deployment's region (with --project)"),
    gateway: str | None = typer.Option(None, help="The gateway's URL (default: its Cloud Run URL; with --project)"),
    bucket: str | None = typer.Option(None, help="The data bucket (default: <project>-runtune-data; with --project)"),
    engine_url: str | None = typer.Option(
        None, help="Reach the engine here (from inside its VPC); otherwise its models are listed only if reachable"
    ),
    engine_base: list[str] | None = typer.Option(
        None,
        "--engine-base",
        help="A base model the engine must serve (repeatable; default: the local engine's models, "
        "or what the cloud engine is deployed with)",
    ),
    identity_token: str | None = typer.Option(
        None,
        envvar="RUNTUNE_IDENTITY_TOKEN",
        help="ID token for the engine's URL, e.g. $(gcloud auth print-identity-token), when ADC cannot mint one",
    ),
    timeout_s: float = typer.Option(DEFAULT_TIMEOUT_S, "--timeout", help="Seconds per HTTP probe"),
) -> None:
    """Check the gateway, services, engine, jobs, indexes and identities; each failure says how to fix it."""
    if project is None:
        if gateway or bucket or engine_url:
            console.print("[red]--gateway, --bucket and --engine-url check a cloud deployment: add --project.[/]")
            raise typer.Exit(2)
        state = read_state()
        if state is None:
            console.print("[red]The local platform is not running.[/] Start it: runtune dev up --detach")
            raise typer.Exit(1)
        title = f"local platform at {state['gateway_url']}"
        checks = local_checks(state, expected_bases=engine_base or None, timeout_s=timeout_s)
    else:
        title = f"project {project}, {region}"
        checks = _cloud_checks(project, region, gateway, bucket, engine_url, engine_base, identity_token, timeout_s)
    _print(title, checks)
    if not all_ok(checks):
        raise typer.Exit(1)


def _print(title: str, checks: list[Check]) -> None:
    table = Table("check", "", "detail", "fix", title=f"runtune doctor: {title}", title_justify="left")
    for check in checks:
        mark = "[yellow]skip[/]" if check.skipped else "[green]ok[/]" if check.ok else "[red]FAIL[/]"
        table.add_row(escape(check.name), mark, escape(check.detail), escape(check.fix) if not check.ok else "")
    console.print(table)
    failed = [check for check in checks if not check.ok]
    if failed:
        console.print(f"[red]{len(failed)} of {len(checks)} checks failed.[/] To fix:")
        for check in failed:
            console.print(f"  {escape(check.name)}: {escape(check.fix)}", soft_wrap=True)
    else:
        console.print(f"[green]All {len(checks)} checks passed.[/]")


def _cloud_checks(
    project: str,
    region: str,
    gateway: str | None,
    bucket: str | None,
    engine_url: str | None,
    engine_base: list[str] | None,
    identity_token: str | None,
    timeout_s: float,
) -> list[Check]:
    # Imported here: the Google clients are only needed against a deployment.
    from runtune.doctor.cloud import CloudClients, CloudDoctor, Deployment

    deployment = Deployment(project, region, bucket or "", gateway_url=gateway, engine_url=engine_url)
    try:
        clients = CloudClients.create()
    except Exception as exc:  # google.auth's DefaultCredentialsError and friends: one fix for all
        return [
            Check.failed(
                "credentials", f"no Google credentials ({type(exc).__name__})", "gcloud auth application-default login"
            )
        ]
    return CloudDoctor(
        deployment,
        clients,
        expected_bases=engine_base or None,
        authorization=(lambda _url: f"Bearer {identity_token}") if identity_token else _fetch_id_token,
        identity=_identities(deployment),
        timeout_s=timeout_s,
    ).run()


def _fetch_id_token(audience: str) -> str:
    import google.auth.transport.requests
    import google.oauth2.id_token

    return f"Bearer {google.oauth2.id_token.fetch_id_token(google.auth.transport.requests.Request(), audience)}"


def _identities(deployment: Deployment) -> Callable[[], list[Check]]:
    from runtune.doctor.identity import GooglePolicies, identity_checks, roles_from_grants

    def run() -> list[Check]:
        # The permissions table (runtune/permissions.py) says what each deployable's account needs.
        from runtune import permissions

        expected = roles_from_grants(
            permissions.all_required_grants(),
            deployment.project,
            deployment.data_bucket,
            job_prefix=deployment.job_prefix,
            gpus=deployment.gpus,
        )
        policies = GooglePolicies(deployment.project, deployment.region)
        return identity_checks(expected, policies, deployment.project, deployment.region)

    return run

"""The ``hf-eco2ai responder`` command: run the Alertmanager webhook receiver until interrupted.

Imports nothing heavy at module level; the Kubernetes client is imported when the command runs.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import typer

logger = logging.getLogger(__name__)

TOKEN_ENV = "HF_ECO2AI_RESPONDER_TOKEN"


def _fail(message: str) -> typer.Exit:
    typer.echo(f"hf-eco2ai responder: {message}", err=True)
    return typer.Exit(2)


def _token(token_file: Path | None) -> str:
    """The bearer token from ``--token-file`` or the environment; never from the command line."""
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except OSError as err:
            raise _fail(f"cannot read --token-file {str(token_file)!r}: {err}") from None
        if not token:
            raise _fail(f"--token-file {str(token_file)!r} is empty; write the bearer token in it")
    else:
        token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise _fail(
            f"no bearer token; set {TOKEN_ENV} or pass --token-file (a Secret mounted as a file)"
        )
    return token


def _kubernetes_config_error(err: Exception, dry_run: bool) -> str:
    """One line saying why the API client could not be built, and what to pass instead."""
    detail = " ".join(str(err).split())
    message = (
        f"cannot load the Kubernetes configuration ({detail}); "
        "pass --kubeconfig PATH (and --context NAME) or --in-cluster inside a pod"
    )
    # A dry run changes nothing but still reads the Deployment, so it needs the API too.
    return f"dry run still reads the Deployment: {message}" if dry_run else message


def responder(
    host: Annotated[
        str, typer.Option(help="Address to bind; use 0.0.0.0 inside a pod.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to bind.")] = 9467,
    token_file: Annotated[
        Path | None, typer.Option(help=f"File holding the bearer token (else ${TOKEN_ENV}).")
    ] = None,
    alert: Annotated[
        list[str] | None, typer.Option(help="Alert name to act on (repeatable).")
    ] = None,
    deployment_label: Annotated[
        str, typer.Option(help="Alert label naming the Deployment.")
    ] = "deployment",
    namespace_label: Annotated[
        str, typer.Option(help="Alert label naming its namespace.")
    ] = "namespace",
    default_namespace: Annotated[
        str, typer.Option(help="Namespace when the alert has none.")
    ] = "default",
    namespace: Annotated[
        list[str] | None, typer.Option(help="Only act in this namespace (repeatable).")
    ] = None,
    audit_log: Annotated[Path, typer.Option(help="JSON-lines audit log (appended).")] = Path(
        "responder-audit.jsonl"
    ),
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Read and log; change nothing.")
    ] = False,
    kubeconfig: Annotated[
        Path | None,
        typer.Option(help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)."),
    ] = None,
    context: Annotated[str | None, typer.Option(help="kubeconfig context.")] = None,
    in_cluster: Annotated[
        bool, typer.Option("--in-cluster", help="Use the pod's service account.")
    ] = False,
    max_body_bytes: Annotated[int, typer.Option(min=1024, help="Largest request accepted.")] = 1
    << 20,
) -> None:
    """Alertmanager webhook receiver: scale the alert's Deployment to 0 and annotate it."""
    from hf_eco2ai.control.responder import (
        AuditLog,
        KubernetesDeployments,
        Responder,
        ResponderServer,
        ResponderSettings,
        load_api_client,
    )

    token = _token(token_file)
    settings = ResponderSettings(
        alert_names=frozenset(alert or ["CriticalCarbonEmissions"]),
        deployment_label=deployment_label,
        namespace_label=namespace_label,
        default_namespace=default_namespace,
        allowed_namespaces=frozenset(namespace) if namespace else None,
        dry_run=dry_run,
    )
    try:
        # Every decision is audited: refuse to start when the audit log cannot be appended to.
        audit_log.parent.mkdir(parents=True, exist_ok=True)
        with audit_log.open("a", encoding="utf-8"):
            pass
    except OSError as err:
        raise _fail(f"cannot append to the audit log {str(audit_log)!r}: {err}") from None
    try:
        api = load_api_client(str(kubeconfig) if kubeconfig else None, context, in_cluster)
    except ImportError:
        raise _fail("the Kubernetes client is missing; pip install kubernetes") from None
    except Exception as err:  # noqa: BLE001 - the client raises several unrelated types here
        raise _fail(_kubernetes_config_error(err, dry_run)) from None
    try:
        server = ResponderServer(
            Responder(settings, KubernetesDeployments(api), AuditLog(audit_log)),
            token,
            host=host,
            port=port,
            max_body_bytes=max_body_bytes,
        )
    except OSError as err:
        raise _fail(f"cannot listen on {host}:{port}: {err}") from None
    typer.echo(
        f"hf-eco2ai responder on {server.url}/webhook (dry run: {dry_run}); audit log {audit_log}"
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


def register(app: typer.Typer) -> None:
    """Add the ``responder`` command to the ``hf-eco2ai`` application."""
    app.command("responder")(responder)

"""``funnel models``: the model registry from the command line (list, show, promote, rollback).

Example:
    funnel models list     --data-dir D            # every version: status, model, NDCG on the gate's window
    funnel models show     --data-dir D VERSION    # manifest and gate report (--json for all of it)
    funnel models promote  --data-dir D VERSION    # make it live (a rejected one needs --force)
    funnel models rollback --data-dir D            # back to the version live before the current one

A version that does not exist, or a data directory without models, is one line and exit code 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from funnel.core.errors import NotFoundError
from funnel.training.manifest import finite
from funnel.training.registry import ModelRegistry

models_app = typer.Typer(
    no_args_is_help=True,
    help="The model registry: list versions, show one, promote one, roll back.",
)
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)

DataDir = Annotated[Path, typer.Option("--data-dir", help="The engine's data directory.")]
Version = Annotated[str, typer.Argument(help="A version name, as `funnel models list` prints it.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
DEFAULT_DIR = Path("./funnel-data")


def open_registry(data_dir: Path) -> ModelRegistry:
    """The registry of ``data_dir``; ``NotFoundError`` (exit 2) when nothing was trained there."""
    root = Path(data_dir) / "models"
    if not root.is_dir():
        raise NotFoundError(
            f"no models in {data_dir}: check --data-dir, or train first (funnel train --data-dir {data_dir})"
        )
    return ModelRegistry(root, create=False)


@models_app.command("list")
def list_(data_dir: DataDir = DEFAULT_DIR, as_json: AsJson = False) -> None:
    """Every version, oldest first: status, model, NDCG@k on the gate's window, reason."""
    from funnel.cli_output import models_table

    registry = open_registry(data_dir)
    manifests = registry.manifests()
    if as_json:
        rows = [finite(m.to_dict()) for m in manifests]
        body = {"live": registry.live(), "previous": registry.previous_live(), "versions": rows}
        typer.echo(json.dumps(body, indent=2))
        return
    if not manifests:
        console.print(f"no model versions in {data_dir}")
        return
    console.print(models_table(manifests, registry.previous_live()))


@models_app.command()
def show(version: Version, data_dir: DataDir = DEFAULT_DIR, as_json: AsJson = False) -> None:
    """One version's manifest: status and reason, data window, hashes, parent, gate report."""
    from funnel.cli_output import gate_table, manifest_table

    manifest = open_registry(data_dir).manifest(version)
    if as_json:
        typer.echo(json.dumps(finite(manifest.to_dict()), indent=2))
        return
    console.print(manifest_table(manifest))
    gate = manifest.metrics.get("gate")
    if gate:
        console.print(gate_table(gate))


@models_app.command()
def promote(
    version: Version,
    data_dir: DataDir = DEFAULT_DIR,
    force: Annotated[
        bool, typer.Option("--force", help="Promote a rejected (or not yet judged) version anyway.")
    ] = False,
) -> None:
    """Make VERSION live (atomically); serving picks it up on its next request."""
    registry = open_registry(data_dir)
    previous = registry.manual_promote(version, force=force)
    if previous == version:
        console.print(f"{version} is already live")
    else:
        console.print(f"{version} is live (was {previous or 'none'}); undo: funnel models rollback")


@models_app.command()
def rollback(data_dir: DataDir = DEFAULT_DIR) -> None:
    """Make the version that was live before the current one live again."""
    registry = open_registry(data_dir)
    current = registry.live()
    target = registry.rollback(note="rolled back (cli)")
    console.print(f"rolled back: {target} is live (was {current})")

"""``enclave demo``: deterministic synthetic health data for demonstrations and tests."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import typer

from enclave.catalog.progress import progress_bar
from enclave.cli.common import acting, ok, settings
from enclave.demo.load import load_demo_datasets
from enclave.demo.synthetic import generate as make_data
from enclave.demo.synthetic import write_csv, write_fhir
from enclave.errors import InvalidInput

app = typer.Typer(help="Generate synthetic (never real) health data.", no_args_is_help=True)


@app.command("generate")
def generate(
    outdir: Path = typer.Argument(..., help="Directory to write csv/ (with dictionary.yaml) and fhir/ into."),
    patients: int = typer.Option(1000, "--patients", help="Number of patients (records scale with it)."),
    seed: int = typer.Option(0, "--seed", help="Same seed and size give identical files."),
    fmt: str = typer.Option("both", "--format", help="csv, fhir or both."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress display."),
) -> None:
    """Write patients, admissions, diagnoses, prescriptions and lab results."""
    if fmt not in {"csv", "fhir", "both"}:
        raise InvalidInput(f"--format {fmt!r} is not one of csv, fhir, both")
    if patients < 1:
        raise InvalidInput("--patients must be at least 1")
    if outdir.exists() and any(outdir.iterdir()):
        raise InvalidInput(f"{outdir} is not empty: give a new or empty directory")
    data = make_data(patients, seed)
    outdir = outdir.absolute()
    outdir.parent.mkdir(parents=True, exist_ok=True)
    # Written beside OUTDIR and renamed into place: never a half-written demo directory.
    stage = Path(tempfile.mkdtemp(prefix=f".{outdir.name}-", dir=outdir.parent))
    try:
        with progress_bar(quiet) as progress:
            if fmt in {"csv", "both"}:
                write_csv(data, stage / "csv", progress)
            if fmt in {"fhir", "both"}:
                write_fhir(data, stage / "fhir", progress)
        stage.chmod(0o755)
        if outdir.exists():
            outdir.rmdir()
        stage.rename(outdir)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    counts = ", ".join(f"{t} {n}" for t, n in data.rows.items())
    ok(f"wrote synthetic data for {patients} patients (seed {seed}) to {outdir}: {counts}")


@app.command("setup")
def setup(
    patients: int = typer.Option(2000, "--patients", help="Size of the synthetic dataset."),
    as_json: bool = typer.Option(False, "--json", help="Print the demo accounts as JSON."),
) -> None:
    """Create the demo enclave (people, two projects, synthetic data, grants); safe to repeat."""
    import json

    from enclave.cli.common import settings
    from enclave.demo.setup import PEOPLE, setup_demo

    s = settings()
    accounts = setup_demo(s, patients=patients)
    if as_json:
        typer.echo(json.dumps(accounts, indent=2))
        return
    typer.echo("Demo accounts (sign in at http://127.0.0.1:8000 with the password, then the one-time code):")
    for person in PEOPLE:
        a = accounts[person.name]
        typer.echo(f"  {person.name:<6} password {a['password']:<18} {person.about}")
    typer.echo("One-time codes: add the secret to an authenticator app, or for the demo run")
    typer.echo("  .venv/bin/enclave demo code NAME")
    typer.echo(f"(secrets and passwords of these demo accounts: {s.home / 'demo-accounts.json'})")


@app.command("code")
def code(name: str = typer.Argument(..., help="A demo account, e.g. ada.")) -> None:
    """Print a demo account's current one-time code (demo accounts only)."""
    from enclave.cli.common import settings
    from enclave.demo.setup import current_code

    typer.echo(current_code(settings(), name))


@app.command("load")
def load(
    ctx: typer.Context,
    patients: int = typer.Option(1000, "--patients", help="Number of synthetic patients."),
    seed: int = typer.Option(1, "--seed"),
    quiet: bool = typer.Option(False, "--quiet", help="No progress display."),
) -> None:
    """Ingest the demo datasets (demo_hospital from CSV, demo_fhir from FHIR) if missing."""
    with acting(ctx) as (session, actor), progress_bar(quiet) as progress:
        versions = load_demo_datasets(session, actor, settings(), patients=patients, seed=seed, progress=progress)
        done = [f"{v.dataset.name} v{v.version} ({v.row_count} rows)" for v in versions]
    ok("ingested " + ", ".join(done) if done else "demo datasets already loaded")

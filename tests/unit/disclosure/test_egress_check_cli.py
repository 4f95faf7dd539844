from __future__ import annotations

import json

from typer.testing import CliRunner

from enclave.cli.egress import app

runner = CliRunner()


def test_egress_check_cli_json_and_exit_codes(tmp_path):
    good = tmp_path / "good.csv"
    good.write_text("region,count\nNorth,120\n")
    bad = tmp_path / "bad.csv"
    bad.write_text("region,count\nNorth,2\n")
    result = runner.invoke(app, ["check", str(good), "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"status": "pass", "files": [{"path": str(good), "status": "pass", "findings": []}]}
    result = runner.invoke(app, ["check", str(good), str(bad), "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["status"] == "fail"


def test_egress_check_cli_table_output(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("region,count\nNorth,2\n")
    result = runner.invoke(app, ["check", str(bad)])
    assert result.exit_code == 1
    assert "threshold" in result.stdout and "fail" in result.stdout


def test_egress_check_cli_bad_usage_is_one_line_exit_2(tmp_path):
    result = runner.invoke(app, ["check", str(tmp_path / "missing.csv")])
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0 and "no such file" in result.stderr
    policy = tmp_path / "p.yaml"
    policy.write_text("threshhold: 5\n")
    ok = tmp_path / "ok.csv"
    ok.write_text("region,count\nNorth,120\n")
    result = runner.invoke(app, ["check", str(ok), "--policy", str(policy)])
    assert result.exit_code == 2
    assert "threshhold" in result.stderr and "Traceback" not in result.output


def test_egress_check_cli_policy_option_applies(tmp_path):
    policy = tmp_path / "p.yaml"
    policy.write_text("threshold: 200\nversion: strict\n")
    table = tmp_path / "t.csv"
    table.write_text("region,count\nNorth,120\n")
    assert runner.invoke(app, ["check", str(table)]).exit_code == 0
    assert runner.invoke(app, ["check", str(table), "--policy", str(policy)]).exit_code == 1

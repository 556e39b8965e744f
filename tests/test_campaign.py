"""``sweep all``: the plan from what data is there, settings routed to the experiments that have
them, and a real campaign interrupted, resumed and reported."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient
from processes import command_line, kill, proc_table
from test_report import cited_values, verdict_rows
from test_sweep import TINY_DSPRITES

from orchestrator import campaign, sweep
from orchestrator.space import SpaceError
from orchestrator.tracking import start_sweep
from vaecam.data.mnist import MNIST_FILES
from vaecam.data.synthetic import is_synthetic, make_mvtec, make_ucsd

ROOT = Path(__file__).resolve().parents[1]


def test_quick_runs_offline_on_stand_ins_and_says_so(tmp_path):
    members, skipped = campaign.plan(tmp_path, quick=True, strict=False)
    assert not skipped
    by = {m.experiment: m for m in members}
    assert list(by) == ["mnist", "mvtec", "ucsd", "dsprites"]
    assert by["mnist"].space == "digits" and by["mnist"].data.startswith("stand-in")
    for name in ("mvtec", "ucsd"):
        assert by[name].data.startswith("synthetic: generated")
        assert is_synthetic(Path(by[name].data_root))
    assert by["dsprites"].data.startswith("synthetic: procedural")


def test_without_quick_missing_data_is_skipped_with_why_or_with_strict_an_error(tmp_path):
    members, skipped = campaign.plan(tmp_path, quick=False, strict=False)
    assert [m.experiment for m in members] == ["dsprites"]  # procedural: nothing to download
    assert set(skipped) == {"mnist", "mvtec", "ucsd"}
    assert str(tmp_path / "MNIST" / "raw") in skipped["mnist"]
    with pytest.raises(SpaceError, match="--strict: mnist: .*MNIST is not under"):
        campaign.plan(tmp_path, quick=True, strict=True)


def test_real_data_where_it_is(tmp_path):
    (tmp_path / "MNIST" / "raw").mkdir(parents=True)
    for name in MNIST_FILES:
        (tmp_path / "MNIST" / "raw" / name).touch()
    (tmp_path / "mvtec_ad" / "grid" / "train" / "good").mkdir(parents=True)
    members, skipped = campaign.plan(tmp_path, quick=False, strict=False)
    by = {m.experiment: m for m in members}
    assert by["mnist"].space == "mnist" and by["mnist"].data == "real"
    assert by["mvtec"].categories == ("grid",) and by["mvtec"].data.startswith("real")
    assert "bottle" in by["mvtec"].data  # the categories that are not there, named
    assert "ucsd" in skipped


def test_settings_go_to_the_experiments_that_have_them_checked_up_front(tmp_path):
    members, _ = campaign.plan(tmp_path, quick=True, strict=False)

    def sets(overrides, scoring=(), preset=None):
        routed = campaign.route_settings(members, overrides, list(scoring), True, preset)
        return {name: options["--set"] for name, options in routed.items()}

    routed = sets(["epochs=2", "iterations=4", "eval_every=2"])
    assert routed["mnist"] == routed["ucsd"] == ["epochs=2"]
    assert routed["mvtec"] == ["image_size=64", "epochs=2"]  # its own first
    assert routed["dsprites"] == ["iterations=4", "eval_every=2"]
    routed = sets(["mvtec:epochs=3", "epochs=2"])
    assert routed["mvtec"] == ["image_size=64", "epochs=3", "epochs=2"]  # the later one wins
    assert routed["mnist"] == ["epochs=2"]
    with pytest.raises(SpaceError, match="--set 'epoch=2': no experiment has 'epoch' to set"):
        sets(["epoch=2"])
    with pytest.raises(SpaceError, match="'mvtec:iterations=4': mvtec has no 'iterations'"):
        sets(["mvtec:iterations=4"])
    with pytest.raises(SpaceError, match="'cifar' is not an experiment of this campaign"):
        sets(["cifar:epochs=4"])
    with pytest.raises(SpaceError, match="^mnist: .*epochs"):
        sets(["epochs=-1"])
    with pytest.raises(SpaceError, match="dsprites.*authors"):
        sets([], preset="authors")


def test_scoring_lists_go_where_they_apply_checked_up_front(tmp_path):
    members, _ = campaign.plan(tmp_path, quick=True, strict=False)
    routed = campaign.route_settings(
        members, [], ["normalisation=none", "ucsd:target_layer=encoder.6"], True
    )
    scoring = {name: options["--scoring"] for name, options in routed.items()}
    assert scoring["mnist"] == scoring["mvtec"] == ["normalisation=none"]
    assert scoring["ucsd"] == ["normalisation=none", "target_layer=encoder.6"]
    assert scoring["dsprites"] == []  # its maps are part of training: no scoring grid
    with pytest.raises(SpaceError, match="^mvtec: .*encoder.6"):  # not a layer of its model
        campaign.route_settings(members, [], ["target_layer=encoder.6"], True)


TINY = {
    "epochs": "2",
    "mnist:latent_dim": "8",  # one of the quick digits' two latent sizes: one trial
    "mvtec:image_size": "32",
    "ucsd:image_size": "24",
    "ucsd:val_clips": "1",
    "dsprites:model": "ad_factor_vae",
} | {f"dsprites:{key}": value for key, value in TINY_DSPRITES.items()}
#: Each anomaly experiment scored on one reading of its claims only (and the controls): for
#: MVTec AD and UCSD the reproduction's code, so their other reading (the paper's equations) is
#: listed as not measured.
SCORING = {
    "normalisation": "none",
    "mnist:target_layer": "encoder.2",
    "mnist:formulation": "authors",
    "mnist:quantity": "mu",
    "mvtec:target_layer": "encoder.layer2.1.conv1",
    "mvtec:formulation": "reproduction",
    "mvtec:quantity": "mu",
    "ucsd:target_layer": "encoder.8",
    "ucsd:formulation": "reproduction",
    "ucsd:quantity": "mu",
}


@pytest.mark.slow
def test_a_campaign_killed_interrupted_and_resumed_finishes_every_experiment_once(tmp_path):
    # Tiny generated sets where real ones would be: labelled synthetic all the same.
    make_mvtec(tmp_path / "data" / "mvtec_ad", categories=("grid",), size=32)
    make_ucsd(tmp_path / "data" / "UCSD_Anomaly_Dataset.v1p2", n_test=3, masked_clips=(1, 2))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    command = [sys.executable, "-m", "orchestrator.sweep", "all", "--quick", "--seeds", "1"]
    command += ["--name", "camp", "--data-root", str(tmp_path / "data")]
    command += ["--tracking-uri", uri, "--storage-path", str(tmp_path / "results")]
    command += [a for key, value in TINY.items() for a in ("--set", f"{key}={value}")]
    command += [a for key, value in SCORING.items() for a in ("--scoring", f"{key}={value}")]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    log = tmp_path / "campaign.log"

    def start(*extra: str) -> subprocess.Popen:
        with open(log, "a") as out:
            return subprocess.Popen(
                [*command, *extra], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def sweeps() -> set[int]:
        return {pid for pid in proc_table() if "--name camp-" in command_line(pid)}

    # kill -9 forwards nothing: the sweeps end with the campaign (its local Ray instance goes
    # with it) instead of running on, where the resume below would start them a second time
    process = start()
    try:
        deadline = time.monotonic() + 120
        while log.read_text().count("] started: ") < 4 or len(sweeps()) < 4:
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        time.sleep(2)
        process.kill()
        deadline = time.monotonic() + 30
        while sweeps() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not sweeps(), [command_line(pid) for pid in sweeps()]
    finally:
        process.kill()
        kill(sweeps(), signal.SIGKILL)

    process = start("--resume")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:  # one sweep ended, not all
        if "ended with exit 0" in log.read_text():
            break
        time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    assert process.wait(120) == 128 + signal.SIGINT, log.read_text()[-3000:]
    text = log.read_text()
    assert "Resume the campaign with:" in text
    assert text.count("data: synthetic: generated, found at") == 2  # the plan, as printed
    finished = re.findall(r"\[(\w+)\] ended with exit 0", text)
    assert finished and "ended with exit 130" in text  # some sweeps finished, others stopped

    resumed = start("--resume")
    assert resumed.wait(400) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert all(f"[{name}] finished in an earlier attempt" in text for name in finished)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("all").experiment_id
    (top,) = client.search_runs([experiment], "tags.`vaecam.sweep` = 'camp'")
    assert top.info.status == "FINISHED"
    assert 0 < top.data.metrics["campaign/cpu_busy_fraction"] <= 1
    sweeps = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{top.info.run_id}'")
    expected = {"camp-mnist": 1, "camp-mvtec": 1, "camp-ucsd": 1, "camp-dsprites": 1}
    assert {run.data.tags["vaecam.sweep"] for run in sweeps} == set(expected)
    for sweep_run in sweeps:
        trials = client.search_runs(
            [experiment], f"tags.`mlflow.parentRunId` = '{sweep_run.info.run_id}'"
        )
        ids = [run.data.tags["ray.trial_id"] for run in trials]
        assert len(ids) == len(set(ids)) == expected[sweep_run.data.tags["vaecam.sweep"]]
        assert all(run.info.status == "FINISHED" for run in trials)

    report = tmp_path / "results" / "camp" / "report" / "report.md"
    text = report.read_text()
    for name in expected:
        assert f": {name}" in text  # a section per experiment
    verdicts = verdict_rows(text)
    dropped = [row for row in verdicts if row["verdict"].startswith("not measured")]
    assert {(row["experiment"], row["reading"]) for row in dropped} == {
        ("mvtec", "the paper's equations"),
        ("ucsd", "the paper's equations"),
    }
    measured = [row for row in verdicts if row not in dropped]
    assert {row["experiment"] for row in measured} == {"digits", "mvtec", "ucsd", "dsprites"}
    for row in measured:
        assert row["verdict"].startswith("no verdict: not the paper's data")
        values = cited_values(client, row["scores.json row"], row["runs"].split())
        assert float(row["ours [95%]"].split()[0]) == pytest.approx(
            sum(values) / len(values), abs=5e-4
        )


CHILD = """
import signal, sys, time
from orchestrator.campaign import end_with_campaign
signal.signal(signal.SIGINT, lambda *_: (open(sys.argv[1], "w").close(), sys.exit(130)))
end_with_campaign()
print("ready", flush=True)
time.sleep(60)
"""


def test_a_sweep_on_a_cluster_that_outlives_its_campaign_stops_as_on_ctrl_c(tmp_path):
    """The campaign's death, by any signal, reaches its sweeps as the Ctrl-C it could not
    forward (here a shell stands for the campaign)."""
    stopped = tmp_path / "stopped"
    child = f"{shlex.quote(sys.executable)} -c {shlex.quote(CHILD)} {stopped}"
    script = f"export {campaign.CAMPAIGN_PID}=$$; {child} & wait"
    env = os.environ | {campaign.CAMPAIGN_END_SIGNAL: str(int(signal.SIGINT))}
    shell = subprocess.Popen(["bash", "-c", script], cwd=ROOT, env=env, stdout=subprocess.PIPE)
    try:
        assert shell.stdout.readline() == b"ready\n"
        shell.kill()
        deadline = time.monotonic() + 10
        while not stopped.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert stopped.exists()
    finally:
        shell.kill()


def test_each_sweep_gets_the_flags_given_and_only_those():
    args = sweep.parse_args(["all", "--quick", "--seeds", "2", "--no-system-metrics", "--strict"])
    flags = campaign.passed_flags(args, sweep.build_parser())
    assert flags == ["--quick", "--seeds", "2", "--no-system-metrics"]


def test_a_campaign_resumes_as_it_started(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    params = {"overrides": ["epochs=2"], "scoring": [], "members": [], "skipped": {}}
    start_sweep(uri, "all", "camp", params | {"quick": True, "cpus_per_trial": 1})
    flags = ["--name", "camp", "--tracking-uri", uri, "--storage-path", str(tmp_path / "r")]
    args = sweep.parse_args(["all", "--resume", *flags, "--set", "epochs=3"])
    assert campaign.main(args, sweep.build_parser()) == 2
    assert "--set ['epochs=3'] differs from the campaign's ['epochs=2']" in capsys.readouterr().err

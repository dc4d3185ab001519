"""`adaptlog-train pretrain / adapt / evaluate` end to end on real slices (TransLog: the quickest family on CPU), and
its exit codes from a real process: 2 usage, 1 failure, 3 incompatible artifact, 130 interrupted."""

from __future__ import annotations

import fcntl
import gzip
import json
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
import torch

from harness.commands import ctrl_c_as_from_a_shell
from harness.streaming import DATA
from stream.model.artifacts import read_manifest
from trainer.cli import main

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BGL = ["--data", str(DATA / "bgl" / "bgl_windows20.csv.gz"), "--data-every", "100"]
BGL_TENTH = ["--data", str(DATA / "bgl" / "bgl_windows20.csv.gz"), "--data-every", "1000"]
THUNDERBIRD = ["--data", str(DATA / "thunderbird" / "Thunderbird_19k.log.gz")]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    # --min-steps 0: the epochs asked for, not raised to the family's 300 optimizer steps (on these small slices that
    # meant 11, 38 and 38 epochs, 90 s of the suite); the adapter still beats the trivial baseline by far (0.94 vs 0.77)
    root = tmp_path_factory.mktemp("models")
    assert main(["pretrain", "--family", "translog", *BGL, "--epochs", "3", "--min-steps", "0", "--quiet",
                 "--out", str(root / "bgl")]) == 0  # fmt: skip
    # Only for the refusal test (an adapter meets a base it was not trained on): a tenth of the slice suffices, as
    # no test reads how well it scores; that halves what this base costs.
    assert main(["pretrain", "--family", "translog", "--set", "layers=2", *BGL_TENTH, "--epochs", "1", "--quiet",
                 "--min-steps", "0", "--out", str(root / "bgl-2layers")]) == 0  # fmt: skip
    code = main(
        ["adapt", "--base", str(root / "bgl"), *THUNDERBIRD, "--target", "thunderbird", "--max-anomalies", "30",
         "--epochs", "10", "--min-steps", "0", "--out", str(root / "tb"), "--quiet"]
    )  # fmt: skip
    assert code == 0
    return root


def test_pretrain_writes_a_complete_manifest(models):
    manifest = read_manifest(models / "bgl")
    assert (manifest.kind, manifest.family, manifest.target) == ("base", "translog", "bgl")
    assert manifest.config["layers"] == 1 and 0.0 < manifest.threshold < 1.0
    assert manifest.pretrained["sentence_encoder"]["name"] == "all-MiniLM-L6-v2"
    fit = manifest.training["fit"]
    assert fit["losses"][-1] < fit["losses"][0] and fit["windows_per_s"] > 0
    assert manifest.training["windows"]["train"]["anomalous"] > 0
    assert manifest.metrics["validation"]["chosen_on"] == "validation"


def test_adapt_then_evaluate_beats_the_trivial_baseline(models, tmp_path, capsys):
    adapter = read_manifest(models / "tb")
    assert (adapter.kind, adapter.target) == ("adapter", "thunderbird")
    assert adapter.base["id"] == read_manifest(models / "bgl").weights_sha256
    assert (
        adapter.training["windows"]["train"]["anomalous"] + adapter.training["windows"]["validation"]["anomalous"] <= 30
    )  # the label budget covers training and validation together
    out = tmp_path / "eval.json"
    plot = tmp_path / "pr.png"
    code = main(
        ["evaluate", "--model", str(models / "bgl"), "--adapter", str(models / "tb"), *THUNDERBIRD,
         "--json", str(out), "--plot", str(plot)]
    )  # fmt: skip
    assert code == 0
    result = json.loads(out.read_text())
    printed = json.loads(capsys.readouterr().out)
    assert printed["f1"] == result["f1"] and "pr_curve" not in printed
    assert result["threshold_chosen_on"].startswith("validation part")
    trivial = 2 * result["test_anomalous"] / (result["test_windows"] + result["test_anomalous"])
    print(f"\nThunderbird via BGL base + adapter: {printed}; predict-all-anomalous F1 {trivial:.3f}")
    assert result["tp"] + result["fn"] == result["test_anomalous"]
    assert result["f1"] > trivial and 0 < result["pr_auc"] <= 1
    assert result["f1"] <= result["ceiling"]["f1"] <= 1  # no model beats what the windows' lines allow
    assert result["ceiling"]["anomalous"] == result["test_anomalous"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_adapter_for_another_base_is_refused(models, capsys):
    code = main(["evaluate", "--model", str(models / "bgl-2layers"), "--adapter", str(models / "tb"), *THUNDERBIRD])
    assert code == 3
    message = capsys.readouterr().err
    assert "incompatible" in message and "base" in message


def test_missing_and_malformed_data_are_clear_errors(models, tmp_path, capsys):
    code = main(["evaluate", "--model", str(models / "bgl"), "--data", str(tmp_path / "nowhere_bgl.log")])
    assert code == 1 and "does not exist" in capsys.readouterr().err  # data that cannot be read: a failure
    broken = tmp_path / "bgl_windows20.csv.gz"
    with gzip.open(broken, "wt") as f:
        f.write("window_id,split,label,event_ids\n1,train,7,1 2 3\n")
    code = main(["evaluate", "--model", str(models / "bgl"), "--data", str(broken),
                 "--data-templates", str(DATA / "bgl" / "bgl_window_templates.csv")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and "line 2" in err and "label" in err
    assert main(["pretrain", "--family", "translog", *BGL, "--set", "layers=3", "--out", str(tmp_path / "x")]) == 2
    assert "layers" in capsys.readouterr().err  # a hyperparameter the family rejects: usage


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_a_cuda_device_this_machine_lacks_is_a_clear_error_before_any_work(tmp_path, capsys):
    code = main(["pretrain", "--family", "translog", *BGL, "--device", "cuda", "--out", str(tmp_path / "x")])
    assert code == 2 and "CUDA" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_pretrain_and_adapt_on_cuda_then_evaluate_on_the_cpu(tmp_path, capsys):
    """Trained on the GPU, the artifacts load anywhere: the CPU evaluation beats the trivial baseline."""
    base, adapter = tmp_path / "bgl", tmp_path / "tb"
    assert main(["pretrain", "--family", "translog", *BGL, "--epochs", "3", "--device", "cuda", "--quiet",
                 "--out", str(base)]) == 0  # fmt: skip
    assert main(["adapt", "--base", str(base), *THUNDERBIRD, "--target", "thunderbird", "--max-anomalies", "30",
                 "--epochs", "10", "--device", "cuda", "--out", str(adapter), "--quiet"]) == 0  # fmt: skip
    capsys.readouterr()
    out = tmp_path / "eval.json"
    code = main(["evaluate", "--model", str(base), "--adapter", str(adapter), *THUNDERBIRD, "--device", "cpu",
                 "--json", str(out)])  # fmt: skip
    assert code == 0
    result = json.loads(out.read_text())
    trivial = 2 * result["test_anomalous"] / (result["test_windows"] + result["test_anomalous"])
    assert result["f1"] > trivial


def train_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trainer.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize(
    ("args", "named"),
    [
        ((), "required"),
        (("pretrain", "--family", "nosuch", *BGL), "invalid choice: 'nosuch'"),
        (("pretrain", "--family", "translog", *BGL, "--threads", "0"), "--threads: must be at least 1"),
        (("pretrain", "--family", "translog", *BGL, "--max-anomalies", "-1"), "--max-anomalies: must be at least 0"),
        (("pretrain", "--family", "translog", *BGL, "--set", "layers"), "expected KEY=VALUE, got 'layers'"),
        (("pretrain", "--family", "translog", *BGL, "--set", "layers=3"), "TransLogConfig.layers"),
        (("pretrain", "--family", "translog", *BGL, "--config", "CONFIG"), "setting --config"),
        (("pretrain", "--family", "translog", "--data", "DATA_TXT"), "cannot tell the format"),
        (("pretrain", "--family", "translog", *BGL, "--device", "tpu"), "setting --device"),
        (("pretrain", "--family", "translog", *BGL, "--threshold-rule", "top-5"), "invalid choice: 'top-5'"),
        (("pretrain", "--family", "translog", *BGL, "--false-alarms-per-1000", "-1"), "between 0 and 1000, got -1"),
    ],
    ids=[
        "no-command",
        "family",
        "threads",
        "max-anomalies",
        "set",
        "hyperparameter",
        "config",
        "format",
        "device",
        "threshold-rule",
        "false-alarms-per-1000",
    ],
)
def test_usage_errors_exit_2_naming_the_flag_without_a_traceback(args, named, tmp_path):
    config = tmp_path / "config.json"
    config.write_text("{layers: 2}")  # not JSON
    args = [{"CONFIG": str(config), "DATA_TXT": str(tmp_path / "data.txt")}.get(a, a) for a in args]
    out = tmp_path / "out"
    done = train_cli(*args, *(["--out", str(out)] if args else []))
    assert done.returncode == 2, done.stderr
    assert named in done.stderr and "Traceback" not in done.stderr
    assert not out.exists()


def test_data_that_cannot_be_read_exits_1_without_a_traceback(tmp_path):
    missing = train_cli("pretrain", "--family", "translog", "--data", str(tmp_path / "none_bgl.log"), "--out", "x")
    assert missing.returncode == 1 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    broken = tmp_path / "bgl_windows20.csv.gz"
    with gzip.open(broken, "wt") as f:
        f.write("window_id,split,label,event_ids\n1,sometimes,0,1 2 3\n")
    done = train_cli("pretrain", "--family", "translog", "--data", str(broken), "--out", str(tmp_path / "x"),
                     "--data-templates", str(DATA / "bgl" / "bgl_window_templates.csv"))  # fmt: skip
    assert done.returncode == 1 and "line 2" in done.stderr and "split" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "x").exists()


def test_an_interrupt_exits_130_with_a_short_message(tmp_path):
    """SIGINT (Ctrl-C) while training: 130, one line, no traceback, nothing written. With stderr not a terminal,
    neither our bars nor transformers' "Loading weights" are drawn: the first line is the trainer's own."""
    process = subprocess.Popen(
        [sys.executable, "-m", "trainer.cli", "pretrain", "--family", "translog", *BGL, "--epochs", "1000",
         "--device", "cpu", "--out", str(tmp_path / "x")],
        cwd=ROOT, stderr=subprocess.PIPE, text=True, preexec_fn=ctrl_c_as_from_a_shell,
    )  # fmt: skip
    try:
        first = process.stderr.readline()
        assert first.startswith("pretraining translog on bgl_windows20"), first
        process.send_signal(signal.SIGINT)
        rest = process.stderr.read()
        assert process.wait(timeout=60) == 130
    finally:
        process.kill()
        process.wait()
    assert rest == "adaptlog-train: interrupted\n"
    assert not (tmp_path / "x").exists()


PROGRESS = """
import sys
from trainer.progress import progress_bar
with progress_bar(quiet=sys.argv[1] == "quiet") as update:
    for done in range(1, 5):
        if update is not None:
            update("epoch 1", done, 4)
print("done", file=sys.stderr)
"""


def progress_output(mode: str, *, terminal: bool) -> str:
    """What the progress bar writes to stderr when stderr is a terminal (a pseudo-terminal) or a pipe."""
    if not terminal:
        done = subprocess.run([sys.executable, "-c", PROGRESS, mode], cwd=ROOT, capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stderr.decode()
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 24 x 100: a bar has room
    try:
        done = subprocess.run(
            [sys.executable, "-c", PROGRESS, mode], cwd=ROOT, stderr=follower, stdout=subprocess.DEVNULL, timeout=120
        )
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the terminal's other side is closed and everything was read
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(leader)
        if follower != -1:
            os.close(follower)
    assert done.returncode == 0
    return b"".join(chunks).decode(errors="replace")


def test_progress_bars_are_drawn_only_on_a_terminal_and_never_with_quiet():
    assert "epoch 1" in progress_output("loud", terminal=True)
    assert progress_output("loud", terminal=False) == "done\n"
    assert "epoch 1" not in progress_output("quiet", terminal=True)

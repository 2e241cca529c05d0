"""Issue 21: nothing a user made is overwritten or lost, and every entry point checks its input.

The full-disk cases run in a child process whose file-size limit (RLIMIT_FSIZE) is smaller than
the file it writes, with SIGXFSZ ignored, so a write fails with EFBIG as on a full disk. The
SIGTERM cases send a real SIGTERM to a child process while it trains.
"""

import json
import os
import resource
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_cli import error_line, fast  # noqa: F401 - fast is a fixture

import vaelab
from vaelab import checkpoints, checks, data, load, train
from vaelab.cli import main, parser
from vaelab.models import VAE, LatentModel

ROOT = Path(__file__).resolve().parents[1]


def child_env(tmp_path, **extra) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VAELAB_OFFLINE": "1",
           "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(ROOT),
           "VAELAB_CACHE": str(tmp_path / "cache"), "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir(exist_ok=True)
    return env | extra


def limited(max_bytes: int):
    """A preexec_fn: files may grow to ``max_bytes``; past that a write fails (EFBIG)."""
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))
    return apply


def run_python(code: str, tmp_path, max_bytes: int | None = None, args=()):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
                          capture_output=True, text=True, env=child_env(tmp_path), timeout=300,
                          preexec_fn=None if max_bytes is None else limited(max_bytes))


def leftovers(folder: Path) -> list[str]:
    """Temporary files or folders left behind in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith((".", "vaelab-")))


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    return checkpoints.save(VAE(2, hidden=(32,)), tmp_path / "ck.pt")


def no_data(monkeypatch):
    monkeypatch.setattr(data, "load_mnist", lambda *a, **k: pytest.fail("loaded data first"))


# 1. encode's --out -----------------------------------------------------------------------

@pytest.mark.parametrize("spelling", ["ck.pt", "./ck.pt", "sub/../ck.pt", "link.pt"])
def test_encode_refuses_to_write_over_its_own_checkpoint(tmp_path, monkeypatch, capsys,
                                                         checkpoint, spelling):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.pt").symlink_to(checkpoint)
    before = checkpoint.read_bytes()
    no_data(monkeypatch)
    assert main(["encode", "ck.pt", "--out", spelling, "--force"]) == 2
    assert "is the checkpoint being encoded" in error_line(capsys)
    assert checkpoint.read_bytes() == before


def test_encode_refuses_to_replace_a_file_without_force(tmp_path, monkeypatch, capsys,
                                                        checkpoint):
    thesis = tmp_path / "thesis_results.csv"
    thesis.write_text("precious")
    no_data(monkeypatch)
    assert main(["encode", str(checkpoint), "--out", str(thesis)]) == 2
    assert "pass --force to replace it" in error_line(capsys)
    assert thesis.read_text() == "precious"


def test_encode_with_force_replaces_the_file(tmp_path, capsys, checkpoint, fast):  # noqa: F811
    out = tmp_path / "z.csv"
    out.write_text("old")
    assert main(["encode", str(checkpoint), "--out", str(out), "--force", *fast[:2]]) == 0
    assert out.read_text().startswith("label,mu_0,mu_1")


@pytest.mark.parametrize("existing", [False, True])
@pytest.mark.parametrize("command", ["train", "encode"])
def test_out_folder_is_refused_with_a_file_name_to_use(tmp_path, monkeypatch, capsys,
                                                       checkpoint, existing, command):
    folder = tmp_path / "newdir"
    if existing:
        folder.mkdir()
    out = str(folder) if existing else f"{folder}/"
    no_data(monkeypatch)
    argv = (["train", "--out", out] if command == "train"
            else ["encode", str(checkpoint), "--out", out])
    assert main(argv) == 2
    assert "is a folder; give a file name in it, e.g. --out" in error_line(capsys)
    assert not folder.is_file() and (folder.is_dir() == existing)


@pytest.mark.parametrize("command", ["train", "encode"])
def test_an_empty_out_is_refused(tmp_path, monkeypatch, capsys, checkpoint, command):
    no_data(monkeypatch)
    argv = ["train", "--out", ""] if command == "train" else ["encode", str(checkpoint),
                                                              "--out", ""]
    assert main(argv) == 2
    assert "--out is empty" in error_line(capsys)


# 2. SIGTERM -----------------------------------------------------------------------------

def terminate_after(proc: subprocess.Popen, marker: str, timeout: float = 120) -> str:
    """Read the child's stderr until ``marker`` appears, send SIGTERM, return all it wrote."""
    seen = []

    def read():
        while chunk := proc.stderr.read1(256):
            seen.append(chunk.decode(errors="replace"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    while marker not in "".join(seen):
        assert proc.poll() is None and time.monotonic() < deadline, "".join(seen)
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    reader.join(timeout=10)
    return "".join(seen)


def test_sigterm_during_cli_train_saves_the_finished_epochs(tmp_path, fast):  # noqa: F811
    out = tmp_path / "m.pt"
    argv = ["train", *fast[:4], "--epochs", "100000", "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", "vaelab", *argv], env=child_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    err = terminate_after(proc, "epoch 3/")
    stdout = proc.stdout.read().decode()
    assert proc.returncode == 130, err + stdout
    history = load(out).metadata["history"]
    assert history["stopped"] == "interrupted" and len(history["train"]) >= 2
    assert "SIGTERM at epoch" in stdout and f"saved {out}" in stdout


def test_sigterm_during_train_or_load_returns_the_finished_epochs(tmp_path):
    code = """
        import vaelab, torch
        torch.manual_seed(0)
        x = torch.rand(64, 1, 28, 28)
        model, history = vaelab.train_or_load("t", lambda: vaelab.VAE(2, hidden=(16,)), x,
                                              epochs=100000, batch_size=64)
        print("returned", len(history), history.stopped, flush=True)
    """
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)],
                            env=child_env(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    terminate_after(proc, "epoch 3/")
    stdout = proc.stdout.read().decode()
    assert proc.returncode == 0, stdout
    assert "SIGTERM at epoch" in stdout and " interrupted" in stdout.splitlines()[-1]
    assert int(stdout.splitlines()[-1].split()[1]) >= 2
    assert not list((tmp_path / "cache").rglob("*.pt"))  # an interrupted run is not cached


# 3. Every write is atomic; a full disk keeps the old file and names the path ----------------

def test_encode_on_a_full_disk_keeps_the_old_csv_and_names_it(tmp_path, checkpoint, fast):  # noqa: F811
    out = tmp_path / "z.csv"
    out.write_text("the old results\n")
    result = run_python("import sys; from vaelab.cli import main; sys.exit(main(sys.argv[1:]))",
                        tmp_path, 200, ["encode", checkpoint, "--out", out, "--force", *fast[:2]])
    assert result.returncode == 1, result.stderr
    assert f"disk full or not writable: {out}" in result.stderr
    assert "previous file there is unchanged" in result.stderr
    assert out.read_text() == "the old results\n" and leftovers(tmp_path) == []


def test_train_on_a_full_disk_names_out_keeps_the_first_error_and_leaves_no_folder(
        tmp_path, fast):  # noqa: F811
    out = tmp_path / "m.pt"
    result = run_python("import sys; from vaelab.cli import main; sys.exit(main(sys.argv[1:]))",
                        tmp_path, 4096, ["train", *fast, "--out", out])
    assert result.returncode == 1, result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(error) == 1, result.stderr
    assert f"disk full or not writable: {out}" in error[0]  # the first error, naming --out
    assert "nothing is saved" in error[0]
    assert not out.exists() and os.listdir(tmp_path / "tmp") == []


def notebook_file(tmp_path) -> Path:
    nb = {"cells": [{"cell_type": "code", "execution_count": 1, "id": "a", "metadata": {},
                     "outputs": [], "source": "x = 1\n" * 2000}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(nb))
    return path


@pytest.mark.parametrize("tool", ["clean_notebooks", "nbgrader_cells"])
def test_notebook_tools_on_a_full_disk_keep_the_notebook(tmp_path, tool):
    path = notebook_file(tmp_path)
    before = path.read_text()
    code = f"""
        import sys, runpy
        sys.argv = ["{tool}", sys.argv[1]]
        runpy.run_path("{ROOT}/tools/{tool}.py", run_name="__main__")
    """
    result = run_python(code, tmp_path, 4096, [path])
    assert result.returncode != 0
    assert f"disk full or not writable: {path}" in result.stderr
    assert path.read_text() == before and leftovers(tmp_path) == []


def test_the_gif_on_a_full_disk_keeps_the_old_one(tmp_path):
    path = tmp_path / "walk.gif"
    path.write_bytes(b"GIF89a the old one")
    code = f"""
        import torch, vaelab
        from vaelab import viz
        torch.manual_seed(0)
        viz.interpolation_gif(vaelab.VAE(2, hidden=(16,)).eval(), torch.rand(2, 1, 28, 28),
                              "{path}")
    """
    result = run_python(code, tmp_path, 2048)
    assert result.returncode == 1 and f"disk full or not writable: {path}" in result.stderr
    assert path.read_bytes() == b"GIF89a the old one" and leftovers(tmp_path) == []


def test_the_sweep_table_on_a_full_disk_keeps_the_old_one(tmp_path):
    path = tmp_path / "sweep.csv"
    path.write_text("beta,mig\n1,0.5\n")
    code = f"""
        from pathlib import Path
        from vaelab import sweep
        rows = [{{"beta": b, "mig": 0.123456789}} for b in range(1000)]
        sweep._results_table(Path("{path}"), True, lambda: rows)
    """
    result = run_python(code, tmp_path, 1024)
    assert result.returncode == 1 and f"disk full or not writable: {path}" in result.stderr
    assert path.read_text() == "beta,mig\n1,0.5\n" and leftovers(tmp_path) == []


# 4. --data-root at the folder holding the files ----------------------------------------------

def test_data_root_may_be_the_folder_holding_the_four_files(tmp_path, capsys, fast):  # noqa: F811
    raw = Path(fast[1]) / "MNIST" / "raw"
    got = data.load_mnist(True, raw)
    assert got.source == "files" and len(got.images) == 128
    assert "from files under" in capsys.readouterr().out


def test_the_note_names_only_the_missing_files(tmp_path, capsys, fast):  # noqa: F811
    raw = Path(fast[1]) / "MNIST" / "raw"
    (raw / "t10k-labels-idx1-ubyte.gz").unlink()
    got = data.load_mnist(True, raw)
    note = capsys.readouterr().out
    assert got.source == "embedded"
    assert "t10k-labels-idx1-ubyte" in note and "train-images" not in note


# 5. Empty environment variables are unset ------------------------------------------------------

def test_empty_vaelab_cache_and_data_mean_the_default_folders(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("VAELAB_CACHE", "")
    monkeypatch.setenv("VAELAB_DATA", " ")
    assert data.cache_dir() == tmp_path / "xdg" / "vaelab"
    assert data.default_root() == tmp_path / "xdg" / "vaelab" / "data"


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=" \t\n", max_size=3))
def test_blank_vaelab_cache_is_never_the_current_folder(monkeypatch, text):
    monkeypatch.setenv("VAELAB_CACHE", text)
    assert data.cache_dir().is_absolute()


# 6. names are names ------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../escaped", "a/b", "", "..", "/abs"])
def test_train_or_load_refuses_a_path_as_name(tmp_path, name, monkeypatch):
    monkeypatch.setattr(train, "fit_checked", lambda *a, **k: pytest.fail("trained first"))
    with pytest.raises(ValueError, match="plain name"):
        vaelab.train_or_load(name, lambda: VAE(2, hidden=(8,)), torch.rand(4, 1, 28, 28),
                             epochs=1, folder=tmp_path / "models")
    assert not (tmp_path / "escaped-").exists() and list(tmp_path.rglob("*.pt")) == []


# 7. --epochs 0 --------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["0", "-3"])
def test_train_epochs_below_one_is_refused_cleanly(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--epochs", value, "--out", str(tmp_path / "m.pt")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "--epochs: must be ≥ 1" in err and "Traceback" not in err
    assert not (tmp_path / "m.pt").exists()


# 8. load's map_location ------------------------------------------------------------------------

@pytest.mark.parametrize(("where", "error", "message"), [
    ("banana", ValueError, "map_location 'banana' is not a device torch knows"),
    (5, TypeError, "map_location must be a string such as 'cpu'"),
] + ([] if torch.cuda.is_available() else [
    ("cuda", ValueError, "map_location 'cuda' is not available on this machine"),
]))
def test_load_checks_map_location_like_fit_checks_device(checkpoint, where, error, message):
    with pytest.raises(error, match=message):
        load(checkpoint, map_location=where)


def test_load_takes_a_device_object(checkpoint):
    assert load(checkpoint, map_location=torch.device("cpu")).device.type == "cpu"


# 9. validated once at the door -----------------------------------------------------------------

def test_train_or_load_checks_the_training_images_once(tmp_path, monkeypatch):
    x = torch.rand(64, 1, 28, 28)
    seen = []
    real = LatentModel.check_images

    def counting(self, images, name="images"):
        seen.append(images is x)
        return real(self, images, name)

    monkeypatch.setattr(LatentModel, "check_images", counting)
    monkeypatch.setattr(checks, "check_images", lambda *a, **k: pytest.fail("slow check"))
    vaelab.train_or_load("once", lambda: VAE(2, hidden=(8,)), x, epochs=1, batch_size=32,
                         folder=tmp_path, progress=False)
    assert seen.count(True) == 1


# 10. adversarial: command-line strings and environment values ------------------------------------

NUMBER_TEXT = st.one_of(st.text(max_size=8), st.sampled_from(
    ["nan", "inf", "-inf", "1e309", "0x10", "1_000", " 3 ", "+2", "1.0", "٣", "-0", "1e-400"]))


@settings(max_examples=150, deadline=None)
@given(option=st.sampled_from(["--epochs", "--latent", "--batch-size", "--lr", "--beta",
                               "--seed", "--anchor-rate", "--images-seen"]),
       text=NUMBER_TEXT)
def test_number_options_parse_or_exit_2(option, text):
    try:
        args = parser().parse_args(["train", option, text, "--out", "m.pt"])
    except SystemExit as exit_:
        assert exit_.code == 2
        return
    value = getattr(args, option[2:].replace("-", "_"))
    assert value == value and abs(value) != float("inf")
    if option in ("--epochs", "--latent", "--batch-size", "--images-seen"):
        assert value >= 1
    if option == "--lr":
        assert value > 0


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=6))
def test_env_flag_is_a_bool_or_a_clear_error(monkeypatch, text):
    if "\0" in text:
        return
    monkeypatch.setenv("VAELAB_QUICK", text)
    try:
        value = checks.env_flag("VAELAB_QUICK")
    except ValueError as err:
        assert "VAELAB_QUICK must be 1/true/yes/on or 0/false/no/off" in str(err)
        return
    assert value is (text.strip().lower() in ("1", "true", "yes", "on"))


@settings(max_examples=200, deadline=None)
@given(name=st.text(max_size=10))
def test_a_name_that_passes_check_name_stays_in_its_folder(name):
    try:
        checks.check_name(name)
    except ValueError:
        return
    folder = Path("/cache/models")
    assert (folder / f"{name}-0.pt").resolve().parent == folder


@settings(max_examples=80, deadline=None)
@given(text=st.text(max_size=12))
def test_any_out_string_is_a_file_or_a_clear_refusal(text):
    from vaelab.cli import UsageError, out_file

    if "\0" in text:
        return
    try:
        path = out_file(text, force=True)
    except UsageError as err:
        assert "--out" in str(err)
        return
    assert not path.is_dir() and path.name

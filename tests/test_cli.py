import subprocess
import sys

from sc_syncot.cli import main


def test_demo_writes_figure_and_summary(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--n", "16", "--n-time", "8", "--no-progress"]) == 0
    assert (out / "density_path.png").stat().st_size > 10_000
    summary = capsys.readouterr().out
    assert "primary-only W2^2" in summary and "synchronized" in summary and str(out) in summary


def test_demo_bad_grid_is_a_clear_error(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--n", "1", "--no-progress"]) == 2
    assert "shape" in capsys.readouterr().err


def test_console_script_help_shows_examples():
    done = subprocess.run([sys.executable, "-m", "sc_syncot.cli", "demo", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "examples:" in done.stdout

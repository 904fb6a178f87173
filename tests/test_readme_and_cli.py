"""The README's API example runs as written; the core CLI commands work and fail readably."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from PIL import Image

from weightsym.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_api_example_runs(tmp_path, monkeypatch, capsys):
    block = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[0]
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {})
    out = capsys.readouterr().out
    # WRN-16-4-bottleneck: the closed-form dense count; tri+spa on each of the 2 middle 3x3 convs per group (n x n,
    # n = 16, 32, 64) stores n(n+1)/2 channel orbits x 6 spatial orbits instead of 9 n^2 values
    from weightsym.models import wrn_param_count

    dense = wrn_param_count(16, 4, block="bottleneck")
    stored = dense - sum(2 * (9 * n * n - n * (n + 1) // 2 * 6) for n in (16, 32, 64))
    assert "triangular+transpose" in out and f"ParameterCount(dense={dense}, stored={stored}, free={stored})" in out
    size = (tmp_path / "wrn.safetensors").stat().st_size  # free values + BN buffers + header, well under dense
    assert stored * 4 < size < stored * 4 + 40000 < dense * 4


def test_plot_structure_writes_png(tmp_path):
    out = tmp_path / "tri.png"
    assert main(["plot-structure", "tri+spa", "--out", str(out)]) == 0
    with Image.open(out) as im:
        assert im.size[0] > 300 and im.size[1] > 200


def test_cli_error_is_one_line_and_exit_2():
    proc = subprocess.run([sys.executable, "-m", "weightsym", "plot-structure", "triangle"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "unknown symmetry 'triangle'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_demo_runs_and_prints_table(capsys):
    assert main(["demo", "--epochs", "1", "--width", "16"]) == 0
    out = capsys.readouterr().out
    assert "stored params" in out and "symmetric (triangular+hflip)" in out
    assert re.search(r"stores \d+\.\d% fewer parameters", out)


def test_structure_plot_captions_stay_inside_the_figure_and_off_the_panels():
    """The README figure: every caption is inside the figure, above its own panel, clear of every other panel and
    caption (the old layout let second-row captions run into the first row and cut the lowrank caption off)."""
    import matplotlib.pyplot as plt

    from weightsym.symmetry import available_symmetries
    from weightsym.symmetry.plot import structure_figure

    fig = structure_figure(available_symmetries())
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    page = fig.bbox
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert len(axes) == len(available_symmetries())
    titles = [ax.title.get_window_extent(renderer) for ax in axes]
    panels = [ax.get_window_extent(renderer) for ax in axes]
    suptitle = fig._suptitle.get_window_extent(renderer)
    for i, title in enumerate(titles):
        assert page.x0 <= title.x0 and title.x1 <= page.x1 and title.y1 <= page.y1, axes[i].get_title()
        assert title.y0 >= panels[i].y1 - 1, axes[i].get_title()  # above its own panel
        assert not title.overlaps(suptitle), axes[i].get_title()
        for j, other in enumerate(panels + titles):
            if j not in (i, len(panels) + i):
                assert not title.overlaps(other), (axes[i].get_title(), j)
    plt.close(fig)


def test_demo_markdown_is_the_readme_table_and_deterministic_for_a_thread_count(capsys):
    """The README's demo table is `weightsym demo --markdown` output: the same accuracies on every run with the same
    thread count, and a caption naming the command, the thread count, the machine and the date."""
    import torch

    threads = torch.get_num_threads()
    try:
        tables = []
        for _ in range(2):
            assert main(["demo", "--epochs", "2", "--width", "16", "--threads", "1", "--markdown"]) == 0
            tables.append(capsys.readouterr().out)
    finally:
        torch.set_num_threads(threads)
    rows = [[line.split("|")[4].strip() for line in t.splitlines()[2:4]] for t in tables]  # test accuracy column
    assert rows[0] == rows[1] and all(cell.endswith("%") for cell in rows[0])
    caption = " ".join(tables[0].strip().split("\n\n")[-1].split())
    assert "`weightsym demo --markdown --epochs 2 --width 16 --threads 1`" in caption
    assert "with 1 torch thread on" in caption and re.search(r"\d{4}-\d\d-\d\d", caption)
    readme = README.read_text()
    assert "Made by `weightsym demo --markdown" in readme and "vary a little" not in readme
    assert re.search(r"\| symmetric \(triangular\+hflip\) \|\s+16,650 \|\s+41,034 \|", readme)

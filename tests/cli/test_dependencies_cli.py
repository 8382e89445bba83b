"""Dependency analysis through the CLI: the inferred order as log lines; a long chain's analysis time."""

from __future__ import annotations

import nbformat


def test_inferred_order_is_one_info_line_per_step_with_details_at_debug(tmp_path, make_nb, run_nbconvert):
    nb = make_nb([
        (["step:a"], "x = 1\ny = 2"),
        (["step:b"], "z = 3"),
        (["step:c"], "print(x + y + z)"),
    ])
    path = tmp_path / "order.ipynb"
    nbformat.write(nb, path)
    result = run_nbconvert(path)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "runs after" in line]
    assert lines == [line for line in lines if "step 'c'" in line] and len(lines) == 1, result.stderr
    assert "'a' (reads x, y)" in lines[0] and "'b' (reads z)" in lines[0], lines[0]
    detailed = run_nbconvert(path, "--log-level=DEBUG")
    assert "step 'c' reads 'y' from step 'a': it runs after it" in detailed.stderr, detailed.stderr


def test_the_analysis_of_a_chain_grows_with_its_length_not_its_square(monkeypatch, make_nb, convert):
    """A chain of steps 8 times as long takes about 8 times as long to analyse (it took about 40 times as long
    when each step walked the graph: 3000 steps held a server's conversion for minutes)."""
    import time

    from nbconvert_kfp.preprocessors.dependencyanalyzer import DependencyAnalyzer

    spent: list[float] = []
    analyse = DependencyAnalyzer.preprocess

    def timed(self, nb, resources):
        start = time.perf_counter()
        try:
            return analyse(self, nb, resources)
        finally:
            spent.append(time.perf_counter() - start)

    monkeypatch.setattr(DependencyAnalyzer, "preprocess", timed)

    def seconds(steps: int) -> float:
        cells = [(["step:s0"], "x0 = 1")] + [([f"step:s{i}"], f"x{i} = x{i - 1} + 1") for i in range(1, steps)]
        notebook = make_nb(cells)
        spent.clear()
        for _ in range(2):
            convert(notebook, "chain")
        return min(spent)

    short, long = seconds(100), seconds(800)
    assert long < 20 * short, f"100 steps: {short:.3f} s, 800 steps: {long:.3f} s"

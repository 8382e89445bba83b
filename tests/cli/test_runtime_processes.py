"""Step runtime in fresh interpreters: get_ipython on demand with shell commands; reports formatted with IPython and pygments when the step has them."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

GET_IPYTHON_PROBE = textwrap.dedent(r"""
    import sys
    from nbconvert_kfp.runtime.step import Step

    with Step("shell") as step:
        assert callable(step.namespace["get_ipython"])
        step.run([(0, "\nx = 20\n")])
        print("IPYTHON_IMPORTED_BEFORE_USE", "IPython" in sys.modules, flush=True)
        step.run([(1, "\nget_ipython().system('echo hi from shell')\n"
                      "lines = get_ipython().getoutput('echo captured')\n"
                      "get_ipython().run_line_magic('time', 'y = x + 1')\n"
                      "shell_ns_is_step = get_ipython().user_ns is globals()\n")])
        print("LINES", step.namespace["lines"][0], flush=True)
        print("Y", step.namespace["y"], flush=True)
        print("SAME_NS", step.namespace["shell_ns_is_step"], flush=True)
""")


REPORT_SCRIPT = textwrap.dedent("""
    import sys
    if sys.argv[2] == "bare":  # a step image without IPython and pygments
        sys.modules["IPython"] = sys.modules["pygments"] = None
    from nbconvert_kfp.runtime.step import Step

    class Artifact:
        path = sys.argv[1]

    cell = '''import numpy
    class Rich:
        def _repr_html_(self):
            return "<b>rich</b>"
    display(Rich(), numpy.zeros(2))
    numpy.ndarray'''
    with Step("formats", report=Artifact(), ipython=True) as step:
        step.run([(1, cell)])
""")


def test_get_ipython_is_provided_lazily_and_runs_shell_commands(tmp_path):
    pytest.importorskip("IPython")
    result = subprocess.run([sys.executable, "-c", GET_IPYTHON_PROBE], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "IPYTHON_IMPORTED_BEFORE_USE False" in out
    assert "hi from shell" in out
    assert "LINES captured" in out
    assert "Y 21" in out
    assert "SAME_NS True" in out


@pytest.mark.parametrize("image", ["full", "bare"])
def test_report_formats_with_ipython_and_pygments_when_the_step_has_them(tmp_path, image):
    page_path = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-c", REPORT_SCRIPT, str(page_path), image], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    page = page_path.read_text(encoding="utf-8")
    assert '<div class="out display html"><b>rich</b></div>' in page  # _repr_html_ either way
    if image == "full":
        assert '<pre class="out result">numpy.ndarray</pre>' in page  # as Jupyter shows a type
        assert '<pre class="out display">array([0., 0.])</pre>' in page
        assert '<span class="kn">import</span>' in page
    else:
        assert '<pre class="out result">&lt;class &#x27;numpy.ndarray&#x27;&gt;</pre>' in page  # repr()
        assert '<pre class="out display">array([0., 0.])</pre>' in page
        assert '<pre class="input">import numpy\nclass Rich:' in page and '<span class="kn">' not in page

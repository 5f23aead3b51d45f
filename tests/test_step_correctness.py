"""The step cache is never wrong: every case of a wrong hit, a needless miss and a cached step
that does not act like the executed one, in a real IPython shell.

A "fresh kernel" here is a new session and an empty namespace in the same shell (the cache
lives on disk); `test_gallery.py` runs the same kind of notebooks in real fresh kernels.
"""

from __future__ import annotations

import shutil
import textwrap

import pytest

from cellops.store import session as session_module

from .conftest import run
from .test_step_magic import SIDE_EFFECT, ran, states


def restart(ip) -> None:
    """As a kernel restart: the session ends, the namespace is empty; the cache stays."""
    session_module.end_session()
    ip.reset(new_session=True)
    run(ip, SIDE_EFFECT)


def importable(folder) -> str:
    """Code that makes the project's modules importable, and forgets stale finders."""
    return (
        f"import importlib, sys\nsys.path.insert(0, {str(folder)!r})\n"
        "importlib.invalidate_caches()\n"
    )


# -- wrong hits: the key covers what the result depends on --------------------------------------


@pytest.mark.parametrize(
    "setup, edit",
    [
        ("factor = 2\ndef scale(v):\n    return v * factor", "factor = 3"),
        (
            "def make_mul(f):\n    return lambda v: v * f\nfactor = 2\nscale = make_mul(factor)",
            "scale = make_mul(3)",
        ),
        (
            "factor = 2\ndef scale(v, k=factor):\n    return v * k",
            "def scale(v, k=3):\n    return v * k",
        ),
        (
            "factor = 2\ndef inner(v):\n    return v * factor\ndef scale(v):\n    return inner(v)",
            "factor = 3",
        ),
    ],
    ids=["global", "closure", "default", "transitive"],
)
def test_a_function_counts_by_what_it_reads(ip, setup, edit):
    run(ip, SIDE_EFFECT + setup)
    step = "%%step scaled\nside_effect('s')\nresult = scale(10)"
    run(ip, step)
    assert ip.user_ns["result"] == 20
    run(ip, edit)
    run(ip, step)
    assert ip.user_ns["result"] == 30
    assert ran("s") == 2


def test_a_project_module_edited_on_disk_counts(ip, project):
    (project / "edited_lib.py").write_text("def inner(v):\n    return v * 2\n")
    (project / "edited_helpers.py").write_text(
        "from edited_lib import inner\ndef helper(v):\n    return inner(v)\n"
    )
    forget = "for m in ('edited_lib', 'edited_helpers'): sys.modules.pop(m, None)\n"
    run(ip, importable(project) + forget + SIDE_EFFECT + "from edited_helpers import helper")
    step = "%%step h\nside_effect('h')\nresult = helper(10)"
    run(ip, step)
    assert ip.user_ns["result"] == 20

    (project / "edited_lib.py").write_text("def inner(v):\n    return v * 3\n")
    shutil.rmtree(project / "__pycache__", ignore_errors=True)  # same size, same second
    restart(ip)
    run(ip, importable(project) + forget)
    run(ip, "from edited_helpers import helper")
    run(ip, step)
    assert ip.user_ns["result"] == 30
    assert ran("h") == 2


def test_a_module_imported_inside_the_step_counts(ip, project):
    (project / "step_imported_lib.py").write_text("VALUE = 1\n")
    run(ip, importable(project) + SIDE_EFFECT)
    step = (
        "%%step imp\nside_effect('imp')\nimport step_imported_lib\nresult = step_imported_lib.VALUE"
    )
    run(ip, step)
    (project / "step_imported_lib.py").write_text("VALUE = 2\n")
    shutil.rmtree(project / "__pycache__", ignore_errors=True)
    restart(ip)
    run(ip, importable(project) + "sys.modules.pop('step_imported_lib', None)")
    run(ip, step)
    assert ip.user_ns["result"] == 2
    assert ran("imp") == 2


def test_the_global_random_generators_count_and_are_replayed(ip):
    run(ip, SIDE_EFFECT + "import numpy as np\nimport random")
    step = "%%step draw\nside_effect('draw')\nv = np.random.rand(3).tolist()\nw = random.random()"
    after = "later = (np.random.rand(), random.random())"

    run(ip, "np.random.seed(0); random.seed(0)")
    run(ip, step + "\n" + "")
    plain_v, plain_w = ip.user_ns["v"], ip.user_ns["w"]
    run(ip, after)
    plain_later = ip.user_ns["later"]

    run(ip, "np.random.seed(1); random.seed(1)")
    run(ip, step)
    assert ip.user_ns["v"] != plain_v  # not the draws of seed 0
    assert ran("draw") == 2

    run(ip, "np.random.seed(0); random.seed(0)")
    run(ip, step)  # a hit, and the generators end where the real run left them
    assert ran("draw") == 2
    assert (ip.user_ns["v"], ip.user_ns["w"]) == (plain_v, plain_w)
    run(ip, after)
    assert ip.user_ns["later"] == plain_later


def test_an_unseeded_generator_matches_any_unseeded_state_but_never_a_seeded_one(ip):
    step = "%%step noise\nside_effect('n')\nv = float(np.random.rand())"
    run(ip, SIDE_EFFECT + "import numpy as np\nnp.random.seed(None)")  # from the OS: unseeded
    run(ip, step)
    restart(ip)
    run(ip, "import numpy as np\nnp.random.seed(None)")
    run(ip, step)  # any unseeded state is as good as another, as in a plain run
    assert ran("n") == 1
    run(ip, "np.random.seed(1)")
    run(ip, step)
    assert ran("n") == 2
    seeded = ip.user_ns["v"]
    run(ip, "np.random.seed(None)")
    run(ip, step)  # unseeded again: the unseeded variant, not seed 1's
    assert ran("n") == 2
    assert ip.user_ns["v"] != seeded


def test_a_step_that_seeds_before_drawing_is_restored_in_a_fresh_kernel(ip):
    step = "%%step seeded\nside_effect('seeded')\nnp.random.seed(3)\nx = np.random.rand()"
    run(ip, SIDE_EFFECT + "import numpy as np")
    run(ip, step)
    first = ip.user_ns["x"]
    restart(ip)
    run(ip, "import numpy as np\nnp.random.rand(5)")  # the generator is elsewhere: no matter
    run(ip, step)
    assert ran("seeded") == 1
    assert ip.user_ns["x"] == first


def test_a_file_read_without_files_in_counts(ip, project, capsys):
    (project / "data.csv").write_text("a\n1\n2\n")
    run(ip, SIDE_EFFECT + "import pandas as pd")
    step = "%%step load\nside_effect('load')\ntotal = int(pd.read_csv('data.csv').a.sum())"
    run(ip, step)
    assert ip.user_ns["total"] == 3
    run(ip, step)
    assert ran("load") == 1

    (project / "data.csv").write_text("a\n1\n2\n3\n")
    capsys.readouterr()
    run(ip, step)
    assert ip.user_ns["total"] == 6
    assert ran("load") == 2
    assert "data.csv changed" in capsys.readouterr().err


def test_a_file_read_by_path_held_in_a_variable_counts(ip, project):
    (project / "rows.txt").write_text("1\n")
    run(ip, SIDE_EFFECT + "path = 'rows.txt'")
    step = "%%step count\nside_effect('c')\nwith open(path) as fh:\n    n = len(fh.readlines())"
    run(ip, step)
    (project / "rows.txt").write_text("1\n2\n")
    run(ip, step)
    assert ip.user_ns["n"] == 2
    assert ran("c") == 2


def test_object_columns_are_digested_by_type(ip):
    run(ip, SIDE_EFFECT + "import pandas as pd\nframe = pd.DataFrame({'c': [1, 'a']})")
    step = "%%step kinds\nside_effect('k')\nkinds = [type(v).__name__ for v in frame.c]"
    run(ip, step)
    run(ip, "frame = pd.DataFrame({'c': ['1', 'a']})")
    run(ip, step)
    assert ip.user_ns["kinds"] == ["str", "str"]
    assert ran("k") == 2


# -- needless misses: a restored value digests as the original -----------------------------------

FIT = """\
%%step fit
side_effect('fit')
from sklearn.datasets import load_iris
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from types import SimpleNamespace
import numpy as np
iris = load_iris()
pipe = make_pipeline(PCA(2), LogisticRegression(max_iter=500)).fit(iris.data, iris.target)
search = GridSearchCV(LogisticRegression(max_iter=500), {"C": [0.5, 1.0]}, cv=3)
search.fit(iris.data, iris.target)
ns = SimpleNamespace(strided=np.arange(30)[::3])
"""
USE = """\
%%step use
side_effect('use')
score = round(pipe.score(iris.data, iris.target), 6)
best = search.best_params_
total = int(ns.strided.sum())
"""


def test_restored_estimators_bunches_and_namespaces_key_the_next_step_as_before(ip):
    run(ip, SIDE_EFFECT)
    run(ip, FIT)
    run(ip, USE)
    expected = (ip.user_ns["score"], ip.user_ns["best"], ip.user_ns["total"])
    for _ in range(2):  # two fresh kernels: both restore both steps
        restart(ip)
        run(ip, FIT)
        run(ip, USE)
        assert (ip.user_ns["score"], ip.user_ns["best"], ip.user_ns["total"]) == expected
    assert (ran("fit"), ran("use")) == (1, 1)


def test_instances_of_a_notebook_class_hit_in_a_fresh_kernel(ip):
    define = "class Box:\n    def __init__(self, v):\n        self.v = v\nbox = Box(4)"
    step = "%%step unbox\nside_effect('u')\nw = box.v * 2"
    run(ip, SIDE_EFFECT + define)
    run(ip, step)
    restart(ip)
    run(ip, define)
    run(ip, step)
    assert ran("u") == 1
    run(ip, define.replace("self.v = v", "self.v = v + 1"))
    run(ip, step)
    assert ip.user_ns["w"] == 10
    assert ran("u") == 2


# -- a cached step acts like the executed one -----------------------------------------------------


def test_inputs_changed_in_place_are_restored_into_the_live_objects(ip):
    setup = (
        "from collections import defaultdict\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "from sklearn.datasets import load_iris\n"
        "X, y = load_iris(return_X_y=True)\n"
        "rows = [0]\nholder = {'rows': rows}\nerrors = defaultdict(list)\n"
        "clf = LogisticRegression(max_iter=500)"
    )
    step = "%%step mutate\nside_effect('m')\nrows.append(1)\nerrors['k'].append(2)\nclf.fit(X, y)"
    run(ip, SIDE_EFFECT + setup)
    run(ip, step)
    restart(ip)
    run(ip, setup)
    run(ip, step)
    assert ran("m") == 1
    assert ip.user_ns["rows"] == [0, 1]
    assert ip.user_ns["holder"]["rows"] is ip.user_ns["rows"]  # changed in place, as in a run
    assert ip.user_ns["errors"] == {"k": [2]}
    run(ip, "pred = clf.predict(X[:3]).tolist()")  # fitted: no NotFittedError
    assert states("mutate") == ["cached"]


def test_fitting_a_pipeline_fits_the_live_estimators_inside_it(ip):
    setup = (
        "from sklearn.datasets import load_iris\nfrom sklearn.decomposition import PCA\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "from sklearn.pipeline import make_pipeline\nX, y = load_iris(return_X_y=True)\n"
        "pca = PCA(2)\npipe = make_pipeline(pca, LogisticRegression(max_iter=500))"
    )
    step = "%%step fit_pipe\nside_effect('fp')\npipe.fit(X, y)\nscore = pipe.score(X, y)"
    run(ip, SIDE_EFFECT + setup)
    run(ip, step)
    shape = ip.user_ns["pca"].components_.shape
    restart(ip)
    run(ip, setup)
    run(ip, step)
    assert ran("fp") == 1
    assert ip.user_ns["pipe"].steps[0][1] is ip.user_ns["pca"]
    assert ip.user_ns["pca"].components_.shape == shape  # fitted through the pipeline


def test_a_generator_the_step_advanced_is_left_where_the_run_left_it(ip):
    setup = "import numpy as np\nrng = np.random.RandomState(0)\ngen = np.random.default_rng(0)"
    step = "%%step adv\nside_effect('a')\nv = rng.rand()\nu = gen.random()"
    after = "nxt = (rng.rand(), gen.random())"
    run(ip, SIDE_EFFECT + setup)
    run(ip, step)
    run(ip, after)
    plain = ip.user_ns["nxt"]
    restart(ip)
    run(ip, setup)
    run(ip, step)
    run(ip, after)
    assert ran("a") == 1
    assert ip.user_ns["nxt"] == plain


def test_outputs_keep_the_sharing_they_had(ip):
    step = (
        "%%step share\nside_effect('sh')\n"
        "from sklearn.decomposition import PCA\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "from sklearn.pipeline import make_pipeline\n"
        "a = [1]\nb = {'a': a}\npca = PCA(2)\npipe = make_pipeline(pca, LogisticRegression())"
    )
    run(ip, SIDE_EFFECT)
    run(ip, step)
    restart(ip)
    run(ip, step)
    assert ran("sh") == 1
    ns = ip.user_ns
    assert ns["b"]["a"] is ns["a"]
    assert ns["pipe"].steps[0][1] is ns["pca"]


def test_an_output_holding_an_input_holds_the_live_input(ip):
    setup = "from sklearn.decomposition import PCA\npca = PCA(2)"
    step = (
        "%%step wrap\nside_effect('w')\nfrom sklearn.pipeline import make_pipeline\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "pipe = make_pipeline(pca, LogisticRegression())"
    )
    run(ip, SIDE_EFFECT + setup)
    run(ip, step)
    restart(ip)
    run(ip, setup)
    run(ip, step)
    assert ran("w") == 1
    assert ip.user_ns["pipe"].steps[0][1] is ip.user_ns["pca"]


def test_a_restored_function_reads_the_live_notebook_globals(ip):
    step = "%%step define\nside_effect('d')\ndef times(v):\n    return v * factor"
    run(ip, SIDE_EFFECT + "factor = 2")
    run(ip, step)
    restart(ip)
    run(ip, "factor = 2")
    run(ip, step)
    assert ran("d") == 1
    run(ip, "factor = 5\nout = times(2)")
    assert ip.user_ns["out"] == 10


def test_a_cached_step_returns_its_last_expression(ip):
    step = "%%step last\nside_effect('l')\nq = 6\nq * 7"
    run(ip, SIDE_EFFECT)
    first = run(ip, step)
    second = run(ip, step)
    assert ran("l") == 1
    assert first.result == second.result == 42


# -- when cellops cannot tell, it says so and does not cache -------------------------------------


def test_an_input_that_cannot_be_digested_is_named_once_and_the_step_always_runs(ip, capsys):
    run(ip, SIDE_EFFECT + "import threading\nlock = threading.Lock()")
    step = "%%step locked\nside_effect('lk')\nheld = lock.locked()"
    run(ip, step)
    err = capsys.readouterr().err
    assert err.count("cellops:") == 1
    assert "lock" in err and "not cached" in err
    run(ip, step)
    assert ran("lk") == 2
    assert states("locked") == ["executed", "executed"]


# -- interrupts ---------------------------------------------------------------------------------


def test_an_interrupt_while_outputs_are_stored_kills_the_run_and_leaves_no_temp_file(ip, project):
    define = textwrap.dedent(
        """
        import os, signal, time
        class Slow:
            def __reduce__(self):
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1)
                return (Slow, ())
        """
    )
    run(ip, SIDE_EFFECT + define)
    result = ip.run_cell("%%step slow\nside_effect('slow')\nvalue = Slow()")
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    assert states("slow") == ["killed"]
    assert list((project / ".cellops").rglob("*.tmp")) == []
    run(ip, "%cellops flush")  # the killed run is written: flush does not hang or lie

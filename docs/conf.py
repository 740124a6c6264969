"""Sphinx configuration of the sc_syncot documentation.

Build (from the repository root): ``python -m sphinx -W --keep-going -b html docs docs/_build/html``.
The tutorials in ``../tutorials`` (jupytext percent scripts) are copied into ``tutorials/`` here and executed at
build time by myst-nb in their fast setting (``SC_SYNCOT_TUTORIAL_FAST=1``).
"""

import importlib.util
import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))  # document the source tree beside this folder, not another installed copy

# The tutorials run in the kernel started by myst-nb, which inherits this environment.
os.environ.setdefault("SC_SYNCOT_TUTORIAL_FAST", "1")
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
# The loaders default to ../shared/data relative to the working directory, which for an executing tutorial is
# docs/tutorials/; point them at ../shared/data beside the repository instead, unless the user chose a folder.
if not os.environ.get("SC_SYNCOT_DATA") and (ROOT.parent / "shared" / "data").is_dir():
    os.environ["SC_SYNCOT_DATA"] = str(ROOT.parent / "shared" / "data")
# The build shares small (2-core) CI machines with other work: no more threads than that per kernel.
os.environ.setdefault("OMP_NUM_THREADS", "2")
# tqdm.auto warns on import in a kernel without ipywidgets; a static page could not show its widgets anyway.
os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), "ignore:IProgress not found"]))

TUTORIALS = ["simulated_multiome", "gaussian_uot", "scicar_a549", "unpaired_scnmt"]
(HERE / "tutorials").mkdir(exist_ok=True)
for name in TUTORIALS:
    source, target = ROOT / "tutorials" / f"{name}.py", HERE / "tutorials" / f"{name}.py"
    if not target.exists() or target.read_bytes() != source.read_bytes():
        shutil.copyfile(source, target)

import sc_syncot  # noqa: E402

project = "sc_syncot"
author = "sc_syncot developers"
copyright = "2026, sc_syncot developers"  # noqa: A001
release = version = sc_syncot.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_nb",
]

# No intersphinx: the CI machines reach PyPI only, and a build must not depend on fetching inventories.

autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"members": True, "show-inheritance": False}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"  # numpydoc renders the Parameters sections; the types stay in the signature
autoclass_content = "class"

numpydoc_show_class_members = False  # the class template lists methods and attributes
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks = set()  # ruff's pydocstyle (numpy convention) checks the docstrings

myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
nb_custom_formats = {".py": ["jupytext.reads", {"fmt": "py:percent"}]}
nb_execution_mode = "cache"
nb_execution_timeout = 900
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".py": "myst-nb"}
# benchmarks/: what benchmarks/*.py --report writes, included by benchmarks.md rather than pages of their own
exclude_patterns = [
    "conf.py", "_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints", "jupyter_execute", "benchmarks/*",
]  # fmt: skip
templates_path = ["_templates"]

html_theme = "sphinx_book_theme"
html_title = "sc_syncot"
html_theme_options = {
    "show_toc_level": 2,
    "navigation_with_keys": False,
}
# one search field: the theme's header already has one, so the sidebar lists the pages only
html_sidebars = {"**": ["navbar-logo.html", "sbt-sidebar-nav.html"]}
html_static_path = ["_static"]
html_css_files = ["custom.css"]


def _mathjax_files() -> Path | None:
    """MathJax 3 as files (the ``django-static-mathjax`` wheel of the docs extra), so pages render math offline."""
    spec = importlib.util.find_spec("mathjax")
    for folder in spec.submodule_search_locations if spec and spec.submodule_search_locations else []:
        es5 = Path(folder) / "static" / "mathjax" / "es5"
        if (es5 / "tex-chtml.js").is_file():
            return es5
    return None


MATHJAX = _mathjax_files()
if MATHJAX is not None:  # else Sphinx's default: MathJax from a CDN, which needs a connection when the page is read
    mathjax_path = "mathjax/tex-chtml.js"


def _copy_mathjax(app, exception):
    if exception is None and MATHJAX is not None and app.builder.format == "html":
        target = Path(app.outdir) / "_static" / "mathjax"
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(MATHJAX / "tex-chtml.js", target)
        # the fonts, the TeX extensions loaded on demand, and the menu's parts; not the speech engine (sre, 4 MB)
        for sub in ("output/chtml/fonts", "input/tex/extensions", "ui", "a11y"):
            shutil.copytree(MATHJAX / sub, target / sub, dirs_exist_ok=True)


def _factory_defaults(app, what, name, obj, options, signature, return_annotation):
    """Show a dataclass field's ``default_factory`` default as ``...``.

    Sphinx cannot parse the ``<factory>`` that :func:`inspect.signature` gives, and then prints the whole signature
    as raw text, with its ``~module.`` prefixes (SyncOTResult's page).
    """
    if signature and "<factory>" in signature:
        return signature.replace("<factory>", "..."), return_annotation
    return None


def setup(app):
    """Copy the bundled MathJax into the built site; make dataclass signatures parseable."""
    app.connect("build-finished", _copy_mathjax)
    app.connect("autodoc-process-signature", _factory_defaults)

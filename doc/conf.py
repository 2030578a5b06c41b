"""Sphinx configuration for the sk_hierclust documentation.

Build with ``make html`` in this folder (warnings are errors), or
``sphinx-build -W --keep-going -b html doc doc/_build/html`` from the
repository root. ``make html-noplot`` (or ``-D plot_gallery=0``) skips running
the examples. The build needs no network: links to the documentation of
Python, NumPy, scikit-learn, ... (intersphinx) are only made when the
environment variable ``SK_HIERCLUST_INTERSPHINX=1`` is set, as fetching their
inventories needs internet access.
"""

import importlib
import os
import re
import sys

sys.path.insert(0, os.path.abspath(".."))

import sk_hierclust  # noqa: E402

project = "sk_hierclust"
copyright = "sk_hierclust developers"
author = "sk_hierclust developers"
version = release = sk_hierclust.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py",
                    "auto_examples/*.zip", "auto_examples/*.md5",
                    "auto_examples/*.codeobj.json"]
root_doc = "index"
default_role = "literal"

# -- autodoc / autosummary / numpydoc ---------------------------------------
autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = False

# -- intersphinx (opt-in: it downloads inventories) -------------------------
if os.environ.get("SK_HIERCLUST_INTERSPHINX", "") not in ("", "0"):
    extensions.append("sphinx.ext.intersphinx")
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "numpy": ("https://numpy.org/doc/stable/", None),
    "scipy": ("https://docs.scipy.org/doc/scipy/", None),
    "sklearn": ("https://scikit-learn.org/stable/", None),
    "torch": ("https://docs.pytorch.org/docs/stable/", None),
    "skorch": ("https://skorch.readthedocs.io/en/stable/", None),
    "matplotlib": ("https://matplotlib.org/stable/", None),
}

# -- sphinx-gallery ---------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "doc_module": ("sk_hierclust",),
    "backreferences_dir": os.path.join("generated", "backreferences"),
    "reference_url": {"sk_hierclust": None},
    "download_all_examples": False,
}

# -- HTML -------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"sk_hierclust {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}
html_static_path = []


# -- hooks ------------------------------------------------------------------
def _skip_metadata_request(app, what, name, obj, skip, options):
    """Leave out scikit-learn's generated ``set_{method}_request`` methods.

    scikit-learn adds them to every estimator whose ``fit`` or ``score`` takes
    extra arguments (metadata routing); their docstrings only refer to
    scikit-learn's own documentation.
    """
    if what == "class" and re.fullmatch(r"set_\w+_request", name):
        return True
    return None


def _data_doc_from_defining_module(app, what, name, obj, options, lines):
    """Document a constant re-exported by a package with its ``#:`` comment.

    autodoc reads ``#:`` comments from the module it documents a name in, so a
    constant defined in a private submodule and re-exported (e.g.
    ``sk_hierclust.datasets.BACKGROUND_PALETTE``) would otherwise get the
    docstring of its type (``tuple``, ``ndarray``, ...).
    """
    if what != "data" or not name.startswith("sk_hierclust."):
        return
    from sphinx.pycode import ModuleAnalyzer

    modname, attr = name.rsplit(".", 1)
    for sub in sorted(m for m in sys.modules if m == modname or m.startswith(modname + ".")):
        if getattr(sys.modules[sub], attr, None) is not obj:
            continue
        try:
            doc = ModuleAnalyzer.for_module(sub).find_attr_docs().get(("", attr))
        except Exception:  # no source
            continue
        if doc:
            lines[:] = list(doc)
            return


def _check_api_covers_public_names(app):
    """Warn (an error under ``-W``) if ``api.rst`` misses a public name."""
    from sphinx.util import logging

    with open(os.path.join(app.srcdir, "api.rst"), encoding="utf-8") as f:
        documented = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", f.read()))
    logger = logging.getLogger(__name__)
    for modname in ("sk_hierclust", "sk_hierclust.metrics", "sk_hierclust.datasets",
                    "sk_hierclust.tree", "sk_hierclust.cli"):
        for public in importlib.import_module(modname).__all__:
            if public not in documented:
                logger.warning("api.rst does not document %s.%s", modname, public)


def setup(app):
    """Connect the hooks above."""
    app.connect("autodoc-skip-member", _skip_metadata_request)
    app.connect("autodoc-process-docstring", _data_doc_from_defining_module)
    app.connect("builder-inited", _check_api_covers_public_names)

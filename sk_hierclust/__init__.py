"""sk_hierclust: deep hierarchical clustering as scikit-learn estimators.

The public names are imported lazily (:pep:`562`): ``import sk_hierclust``
imports neither torch nor the models, so ``sk_hierclust.__version__`` and the
command line's ``--help`` are fast. ``from sk_hierclust import TreeVAE`` (or
``sk_hierclust.TreeVAE``) imports the model's module on first use.
"""

import importlib

__version__ = "0.1.0"

__all__ = ["HCRL", "HTVAE", "VLAC", "ClusterTree", "TreeVAE", "__version__"]

#: Public name -> module (relative to this package) that defines it.
_LAZY_IMPORTS = {
    "ClusterTree": ".tree",
    "HCRL": ".models.hcrl",
    "HTVAE": ".models.htvae",
    "TreeVAE": ".models.treevae",
    "VLAC": ".models.vlac",
}


def __getattr__(name):
    """Import a public name on first access (:pep:`562`).

    Parameters
    ----------
    name : str
        The attribute looked up.

    Returns
    -------
    obj : object
        The public object ``name``; it is cached in the module namespace,
        so later look-ups do not come here.

    Raises
    ------
    AttributeError
        If ``name`` is not a public name of the package.
    """
    if name not in _LAZY_IMPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    obj = getattr(importlib.import_module(_LAZY_IMPORTS[name], __name__), name)
    globals()[name] = obj
    return obj


def __dir__():
    """The module's attributes, including the public names not imported yet.

    Returns
    -------
    names : list of str
        Sorted attribute names.
    """
    return sorted(set(globals()) | set(__all__))

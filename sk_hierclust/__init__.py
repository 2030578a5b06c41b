"""sk_hierclust: deep hierarchical clustering as scikit-learn estimators."""

from .tree import ClusterTree
from .models.hcrl import HCRL
from .models.htvae import HTVAE
from .models.treevae import TreeVAE

__version__ = "0.1.0"

__all__ = ["HCRL", "HTVAE", "ClusterTree", "TreeVAE", "__version__"]

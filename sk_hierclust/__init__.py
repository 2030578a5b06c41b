"""sk_hierclust: deep hierarchical clustering as scikit-learn estimators."""

from .tree import ClusterTree
from .models.hcrl import HCRL
from .models.htvae import HTVAE
from .models.treevae import TreeVAE
from .models.vlac import VLAC

__version__ = "0.1.0"

__all__ = ["HCRL", "HTVAE", "VLAC", "ClusterTree", "TreeVAE", "__version__"]

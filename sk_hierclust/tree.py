"""A light-weight, picklable representation of a cluster hierarchy.

:class:`ClusterTree` stores a rooted tree of clusters as scikit-learn style
parallel arrays (like ``sklearn.tree.DecisionTreeClassifier().tree_``). It is
the common currency between the hierarchical clustering estimators of this
package, the evaluation metrics in :mod:`sk_hierclust.metrics` and the
plotting / export helpers.
"""

import numbers

import numpy as np
from scipy import sparse
from scipy.cluster import hierarchy

__all__ = ["ClusterTree"]


def _as_index_array(values, name):
    """Convert ``values`` to an int64 array, refusing non-integral input."""
    arr = np.asarray(values)
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must contain integers; got dtype {arr.dtype}.")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ValueError(f"{name} must contain integers; got non-integral values.")
    return arr.astype(np.int64, copy=False)


#: Side of a thumbnail in :meth:`ClusterTree.plot`, in points (1/72 inch).
_THUMBNAIL_POINTS = 36.0
#: Padding of a label's rounded box, in units of the font size (matplotlib's default).
_BOX_PAD = 0.3
#: Largest side of a figure that :meth:`ClusterTree.plot` creates, in inches.
_MAX_FIGURE_INCHES = 100.0


def _label_extent(text, fontsize):
    """Width and height in points of a (multi-line) label inside its rounded box.

    Measured on the text's glyph outlines with the default font, so independent of the
    backend; a little larger than what matplotlib draws (line spacing 1.2 on every line).
    """
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    prop = FontProperties(size=fontsize)
    measure = TextToPath()
    lines = text.split("\n")
    width = max(measure.get_text_width_height_descent(line, prop, ismath=False)[0]
                for line in lines)
    pad = 2 * _BOX_PAD * fontsize
    return width + pad, 1.2 * fontsize * len(lines) + pad


def _limits(low, high, margin_low, margin_high, extent, fallback):
    """Axis limits around ``[low, high]`` leaving ``margin_*`` points on an axis of ``extent`` points."""
    span = high - low
    room = extent - margin_low - margin_high
    if span <= 0 or room <= 0:
        return low - fallback, high + fallback
    per_point = span / room  # data units per point
    return low - margin_low * per_point, high + margin_high * per_point


def _check_image_shape(image_shape, row_shape, name):
    """Check ``image_shape`` against the shape of one row of images; return it as a tuple.

    Parameters
    ----------
    image_shape : tuple of int or None
        ``(h, w)`` or ``(c, h, w)`` with c in 1, 3, 4; None infers it from ``row_shape``.
    row_shape : tuple of int
        Shape of one image as given: ``(n_features,)``, ``(h, w)`` or ``(c, h, w)``.
    name : str
        Name of the images argument, for the error messages.

    Returns
    -------
    image_shape : tuple of int
        ``(h, w)`` or ``(c, h, w)``.

    Raises
    ------
    ValueError
        If ``image_shape`` is malformed or does not hold ``prod(row_shape)`` values, or
        it is None and ``row_shape`` is flat and not a perfect square.
    """
    n_values = int(np.prod(row_shape)) if len(row_shape) else 0
    if image_shape is None:
        if len(row_shape) in (2, 3):
            image_shape = row_shape
        elif len(row_shape) == 1 and int(np.sqrt(n_values)) ** 2 == n_values and n_values:
            side = int(np.sqrt(n_values))
            image_shape = (side, side)
        else:
            raise ValueError(
                f"Cannot tell the image shape of {name} of shape (n, {', '.join(map(str, row_shape))}): "
                "pass image_shape=(height, width) or (channels, height, width)."
            )
    try:
        shape = tuple(int(s) for s in image_shape)
    except (TypeError, ValueError):
        raise ValueError(f"image_shape must be a tuple of ints; got {image_shape!r}.") from None
    if len(shape) not in (2, 3) or min(shape) < 1 or (len(shape) == 3 and shape[0] not in (1, 3, 4)):
        raise ValueError(
            "image_shape must be (height, width) or (channels, height, width) with 1, 3 or 4 "
            f"channels; got {image_shape!r}."
        )
    if int(np.prod(shape)) != n_values:
        raise ValueError(
            f"{name} of shape (n, {', '.join(map(str, row_shape))}) do not hold images of shape "
            f"{shape}: {n_values} values per image instead of {int(np.prod(shape))}."
        )
    return shape


def _as_pictures(thumbnails, image_shape, node_count, name):
    """Per-node pictures given directly: a list of arrays of ``image_shape`` (None for NaN rows)."""
    if sparse.issparse(thumbnails):
        thumbnails = thumbnails.toarray()
    thumbnails = np.asarray(thumbnails, dtype=np.float64)
    if thumbnails.ndim < 2 or thumbnails.shape[0] != node_count:
        raise ValueError(
            f"{name} must have one row per node ({node_count}); got shape {thumbnails.shape}."
        )
    shape = _check_image_shape(image_shape, thumbnails.shape[1:], name)
    flat = thumbnails.reshape(node_count, -1)
    return [None if np.isnan(row).any() else row.reshape(shape) for row in flat]


def _display_pictures(pictures):
    """Pictures as matplotlib draws them, and the shared colour scale of one-channel ones.

    Parameters
    ----------
    pictures : list of (ndarray of shape (h, w) or (c, h, w), or None)

    Returns
    -------
    pictures : list of (ndarray of shape (h, w) or (h, w, c), or None)
        One-channel pictures as (h, w), unchanged; RGB(A) ones channel-last, rescaled
        together to [0, 1] when they leave it.
    norm : matplotlib.colors.Normalize or None
        Shared scale over all one-channel pictures.
    """
    from matplotlib.colors import Normalize

    drawn = [p for p in pictures if p is not None]
    if not drawn:
        return pictures, None
    if drawn[0].ndim == 2 or drawn[0].shape[0] == 1:
        out = [None if p is None else p.reshape(p.shape[-2:]) for p in pictures]
        low = min(float(p.min()) for p in drawn)
        high = max(float(p.max()) for p in drawn)
        return out, Normalize(vmin=low, vmax=high if high > low else low + 1.0)
    low = min(float(p.min()) for p in drawn)
    high = max(float(p.max()) for p in drawn)
    if low < 0 or high > 1:
        scale = high - low if high > low else 1.0
        pictures = [None if p is None else (p - low) / scale for p in pictures]
    return [None if p is None else np.moveaxis(p, 0, -1) for p in pictures], None


class ClusterTree:
    """Rooted tree of clusters stored as parallel numpy arrays.

    Nodes are numbered ``0 .. node_count - 1`` in topological order: node 0
    is the root and every other node has a smaller id than its children
    (``parent[i] < i``). Internal nodes may have a single child (a
    "pass-through" node, e.g. left over when a sibling leaf was pruned) or
    more than two children. Leaves that received training samples are the
    flat clusters of the hierarchy and carry consecutive cluster labels.

    Parameters
    ----------
    parent : array-like of int, shape (node_count,)
        Parent id of each node; ``-1`` for the root, which must be node 0
        and the only node without a parent. ``parent[i] < i`` for ``i > 0``.
    n_node_samples : array-like of int, shape (node_count,), default=None
        Number of training samples routed to each node, counted over the
        node's whole subtree (so a node's count is at least the sum of its
        children's counts). ``None`` means zeros (no sample information).

    Attributes
    ----------
    parent : ndarray of shape (node_count,), dtype int64
        Parent of each node, ``-1`` for the root.
    children : list of ndarray of dtype int64
        ``children[i]`` holds the children of node ``i`` in ascending order.
    depth : ndarray of shape (node_count,), dtype int64
        Depth of each node; the root has depth 0.
    n_node_samples : ndarray of shape (node_count,), dtype int64
        Training samples in the subtree of each node.
    is_leaf : ndarray of shape (node_count,), dtype bool
        Whether each node has no children.
    node_count : int
        Number of nodes.
    max_depth : int
        Largest node depth.
    n_leaves : int
        Number of leaves (with or without samples).
    node_to_label : ndarray of shape (node_count,), dtype int64
        Consecutive cluster label ``0 .. n_labels - 1`` of each labelled
        leaf, ``-1`` for every other node. Labelled leaves are the leaves
        with ``n_node_samples > 0`` in increasing node-id order, or all
        leaves when no sample counts are known (all zero). The labels of
        samples routed to ``nodes`` are ``node_to_label[nodes]``.
    label_to_node : ndarray of shape (n_labels,), dtype int64
        Inverse of ``node_to_label``: the leaf node of each cluster label,
        so ``node_to_label[label_to_node]`` is ``arange(n_labels)``.

    Raises
    ------
    ValueError
        If ``parent`` does not describe a tree in topological order, or
        ``n_node_samples`` has the wrong length, negative entries, or is
        smaller than the sum of the children's counts somewhere.

    See Also
    --------
    sk_hierclust.metrics.dendrogram_purity : Quality of a tree w.r.t. classes.

    References
    ----------
    .. [1] scikit-learn, "Understanding the decision tree structure" (the
       parallel-array layout of ``DecisionTreeClassifier().tree_``),
       https://scikit-learn.org/stable/auto_examples/tree/plot_unveil_tree_structure.html

    Examples
    --------
    >>> from sk_hierclust import ClusterTree
    >>> tree = ClusterTree([-1, 0, 0, 1, 1], n_node_samples=[10, 6, 4, 2, 4])
    >>> tree
    ClusterTree(node_count=5, n_leaves=3, max_depth=2)
    >>> tree.leaves()
    array([2, 3, 4])
    >>> tree.node_to_label
    array([-1, -1,  0,  1,  2])
    >>> tree.label_to_node
    array([2, 3, 4])
    >>> int(tree.lca(3, 4)), int(tree.lca(2, 4))
    (1, 0)
    """

    def __init__(self, parent, n_node_samples=None):
        parent = _as_index_array(parent, "parent")
        if parent.ndim != 1 or parent.shape[0] == 0:
            raise ValueError(
                f"parent must be a non-empty 1-D array; got shape {parent.shape}."
            )
        node_count = parent.shape[0]
        if parent[0] != -1:
            raise ValueError(
                f"The root must be node 0 with parent -1; got parent[0]={parent[0]}."
            )
        ids = np.arange(node_count, dtype=np.int64)
        bad = np.flatnonzero((parent[1:] < 0) | (parent[1:] >= ids[1:])) + 1
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                "Nodes must be in topological order with a single root at 0: "
                f"need 0 <= parent[i] < i for i > 0, got parent[{i}]={parent[i]}."
            )

        if n_node_samples is None:
            counts = np.zeros(node_count, dtype=np.int64)
        else:
            counts = _as_index_array(n_node_samples, "n_node_samples")
            if counts.shape != (node_count,):
                raise ValueError(
                    f"n_node_samples must have shape ({node_count},) like parent; "
                    f"got {counts.shape}."
                )
            if np.any(counts < 0):
                raise ValueError("n_node_samples must be non-negative.")
            child_sum = np.bincount(
                parent[1:], weights=counts[1:], minlength=node_count
            )
            if np.any(counts < child_sum):
                i = int(np.flatnonzero(counts < child_sum)[0])
                raise ValueError(
                    "n_node_samples must count the samples of the whole subtree: "
                    f"node {i} has {counts[i]} < {int(child_sum[i])} in its children."
                )

        self.parent = parent.copy()
        self.node_count = int(node_count)
        self.n_node_samples = counts.copy()

        # children, ascending (argsort is stable, ids already ascending)
        n_children = np.bincount(parent[1:], minlength=node_count)
        order = np.argsort(parent[1:], kind="stable") + 1
        self.children = np.split(order.astype(np.int64), np.cumsum(n_children)[:-1])
        self.is_leaf = n_children == 0

        # depth by pointer doubling: O(node_count * log(max_depth))
        jump = np.where(parent < 0, 0, parent)
        depth = (parent >= 0).astype(np.int64)
        while np.any(jump != 0):
            depth = depth + depth[jump]
            jump = jump[jump]
        self.depth = depth
        self.max_depth = int(depth.max())

        leaves = np.flatnonzero(self.is_leaf)
        self.n_leaves = int(leaves.size)
        labelled = leaves[counts[leaves] > 0] if np.any(counts > 0) else leaves
        self.label_to_node = labelled.astype(np.int64)
        self.node_to_label = np.full(node_count, -1, dtype=np.int64)
        self.node_to_label[labelled] = np.arange(labelled.size, dtype=np.int64)

    # ------------------------------------------------------------------ utils
    def __repr__(self):
        return (
            f"{type(self).__name__}(node_count={self.node_count}, "
            f"n_leaves={self.n_leaves}, max_depth={self.max_depth})"
        )

    def _check_nodes(self, nodes, name="nodes"):
        """Validate node ids; return an int64 array of the same shape."""
        arr = _as_index_array(nodes, name)
        if arr.size and (arr.min() < 0 or arr.max() >= self.node_count):
            raise ValueError(
                f"{name} must be node ids in [0, {self.node_count}); got values "
                f"in [{arr.min()}, {arr.max()}]."
            )
        return arr

    def _subtree_sum(self, values):
        """Sum per-node ``values`` (shape (node_count, ...)) over subtrees.

        Parameters
        ----------
        values : ndarray of shape (node_count, ...)
            Value attached to each node itself.

        Returns
        -------
        totals : ndarray of shape (node_count, ...)
            For each node, the sum of ``values`` over its subtree.
        """
        totals = np.array(values, copy=True)
        # process one depth level at a time, deepest first
        order = np.argsort(-self.depth, kind="stable")
        bounds = np.flatnonzero(np.diff(self.depth[order])) + 1
        for level in np.split(order, bounds):
            if self.depth[level[0]] == 0:
                break
            np.add.at(totals, self.parent[level], totals[level])
        return totals

    # ---------------------------------------------------------------- queries
    def leaves(self):
        """Return the ids of all leaves.

        Returns
        -------
        leaves : ndarray of shape (n_leaves,), dtype int64
            Leaf node ids in ascending order (including leaves without
            samples).

        Examples
        --------
        >>> ClusterTree([-1, 0, 0, 1]).leaves()
        array([2, 3])
        """
        return np.flatnonzero(self.is_leaf).astype(np.int64)

    def ancestors(self, node):
        """Return the ancestors of a node, from its parent up to the root.

        Parameters
        ----------
        node : int
            Node id.

        Returns
        -------
        ancestors : ndarray of shape (depth[node],), dtype int64
            Ancestor ids in bottom-up order; empty for the root.

        Raises
        ------
        ValueError
            If ``node`` is not a node id of the tree.

        Examples
        --------
        >>> ClusterTree([-1, 0, 0, 1]).ancestors(3)
        array([1, 0])
        """
        if not isinstance(node, numbers.Integral) or not 0 <= node < self.node_count:
            raise ValueError(
                f"node must be an integer in [0, {self.node_count}); got {node!r}."
            )
        out = np.empty(self.depth[node], dtype=np.int64)
        v = int(node)
        for i in range(out.size):
            v = int(self.parent[v])
            out[i] = v
        return out

    def lca(self, a, b):
        """Lowest common ancestor of pairs of nodes.

        A node counts as its own ancestor, so ``lca(a, a) == a`` and the lca
        of a node and one of its descendants is the node itself.

        Parameters
        ----------
        a, b : int or array-like of int
            Node ids; arrays must have the same shape.

        Returns
        -------
        lca : int or ndarray of dtype int64
            Lowest common ancestor of each pair: an ``int`` for scalar input,
            otherwise an array shaped like ``a``.

        Raises
        ------
        ValueError
            If a node id is out of range or the shapes differ.

        Examples
        --------
        >>> tree = ClusterTree([-1, 0, 0, 1, 1])
        >>> tree.lca(3, 4)
        1
        >>> tree.lca([3, 3, 2], [4, 1, 2])
        array([1, 1, 2])
        """
        scalar = np.ndim(a) == 0 and np.ndim(b) == 0
        a = self._check_nodes(a, "a")
        b = self._check_nodes(b, "b")
        if a.shape != b.shape:
            raise ValueError(f"a and b must have the same shape; got {a.shape} and {b.shape}.")
        shape = a.shape
        a, b = a.ravel().copy(), b.ravel().copy()
        depth, parent = self.depth, self.parent
        # lift the deeper node of each pair to the depth of the other one
        for x, other in ((a, b), (b, a)):
            idx = np.flatnonzero(depth[x] > depth[other])
            while idx.size:
                x[idx] = parent[x[idx]]
                idx = idx[depth[x[idx]] > depth[other[idx]]]
        # then lift both until they meet
        idx = np.flatnonzero(a != b)
        while idx.size:
            a[idx] = parent[a[idx]]
            b[idx] = parent[b[idx]]
            idx = idx[a[idx] != b[idx]]
        if scalar:
            return int(a[0])
        return a.reshape(shape)

    def cut(self, depth):
        """Flat clustering obtained by cutting the tree at a given depth.

        The cut nodes are the nodes at depth ``depth`` plus the leaves that
        are shallower. Every node at or below the cut is mapped to the label
        of its cut ancestor-or-self; labels ``0 .. k - 1`` are numbered in
        increasing node-id order of the cut nodes.

        Parameters
        ----------
        depth : int
            Non-negative depth of the cut; 0 gives a single cluster.

        Returns
        -------
        labels : ndarray of shape (node_count,), dtype int64
            Flat label of each node; ``-1`` for internal nodes above the
            cut. ``tree.cut(depth)[nodes]`` labels samples routed to
            ``nodes``.

        Raises
        ------
        ValueError
            If ``depth`` is not a non-negative integer.

        Examples
        --------
        >>> tree = ClusterTree([-1, 0, 0, 1, 1])
        >>> tree.cut(1)
        array([-1,  0,  1,  0,  0])
        """
        if not isinstance(depth, numbers.Integral) or depth < 0:
            raise ValueError(f"depth must be a non-negative integer; got {depth!r}.")
        anc = np.arange(self.node_count, dtype=np.int64)
        idx = np.flatnonzero(self.depth > depth)
        while idx.size:
            anc[idx] = self.parent[anc[idx]]
            idx = idx[self.depth[anc[idx]] > depth]
        is_cut = (self.depth == depth) | (self.is_leaf & (self.depth < depth))
        label_of = np.cumsum(is_cut) - 1
        return np.where(is_cut[anc], label_of[anc], -1).astype(np.int64)

    def decision_path(self, nodes):
        """Return the indicator of the root-to-node path of each given node.

        Parameters
        ----------
        nodes : array-like of int, shape (n_samples,)
            Node id of each sample (e.g. the output of an estimator's
            ``apply``).

        Returns
        -------
        indicator : scipy.sparse.csr_matrix of shape (n_samples, node_count)
            ``indicator[i, j] == 1`` iff node ``j`` is on the path from the
            root to ``nodes[i]`` (both ends included).

        Raises
        ------
        ValueError
            If ``nodes`` is not 1-D or holds an unknown node id.

        See Also
        --------
        sklearn.tree.DecisionTreeClassifier.decision_path : The same output
            for a decision tree.

        Examples
        --------
        >>> ClusterTree([-1, 0, 0, 1]).decision_path([3, 2]).toarray()
        array([[1, 1, 0, 1],
               [1, 0, 1, 0]])
        """
        nodes = self._check_nodes(nodes)
        if nodes.ndim != 1:
            raise ValueError(f"nodes must be 1-D; got shape {nodes.shape}.")
        lengths = self.depth[nodes] + 1
        indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        indices = np.empty(indptr[-1], dtype=np.int64)
        # walk up from each node, filling its row from the end: ancestors
        # have smaller ids, so every row ends up sorted
        rows = np.arange(nodes.size)
        cur = nodes.copy()
        for step in range(int(lengths.max()) if nodes.size else 0):
            indices[indptr[rows + 1] - 1 - step] = cur
            keep = lengths[rows] > step + 1
            rows, cur = rows[keep], self.parent[cur[keep]]
        data = np.ones(indices.size, dtype=np.int64)
        return sparse.csr_matrix(
            (data, indices, indptr), shape=(nodes.size, self.node_count)
        )

    # ---------------------------------------------------------------- export
    def to_linkage(self):
        """Convert the tree to a scipy linkage matrix.

        The observations are the labelled leaves: observation ``i`` is leaf
        ``label_to_node[i]``. Subtrees without labelled leaves are dropped,
        single-child nodes are skipped, and a node with ``m > 2`` children
        is binarised into ``m - 1`` successive merges of its children in
        ascending order. A node at depth ``d`` merges at height
        ``max_depth - d``; the extra merges of a binarised node are spread
        evenly and strictly between ``height - 1`` and ``height``, so the
        result is monotone.

        Returns
        -------
        Z : ndarray of shape (n_labels - 1, 4)
            Linkage matrix: merged cluster ids, height, number of
            observations in the new cluster.

        Raises
        ------
        ValueError
            If the tree has fewer than two labelled leaves.

        See Also
        --------
        scipy.cluster.hierarchy.dendrogram : Plot the result.
        from_linkage : The converse.

        References
        ----------
        .. [1] SciPy, ``scipy.cluster.hierarchy.linkage`` (the format of the
           linkage matrix),
           https://docs.scipy.org/doc/scipy/reference/generated/scipy.cluster.hierarchy.linkage.html

        Examples
        --------
        >>> ClusterTree([-1, 0, 0, 1, 1]).to_linkage()
        array([[1., 2., 1., 2.],
               [0., 3., 2., 3.]])
        """
        n = self.label_to_node.size
        if n < 2:
            raise ValueError(
                f"to_linkage needs at least 2 labelled leaves; the tree has {n}."
            )
        handle = np.full(self.node_count, -1, dtype=np.int64)
        handle[self.label_to_node] = np.arange(n)
        size = np.zeros(self.node_count, dtype=np.int64)
        size[self.label_to_node] = 1
        merges = []  # rows (left handle, right handle, height, size)
        for v in range(self.node_count - 1, -1, -1):
            kids = self.children[v]
            kids = kids[handle[kids] >= 0]
            if kids.size == 0:
                continue
            size[v] = size[kids].sum()
            if kids.size == 1:
                handle[v] = handle[kids[0]]
                continue
            height = float(self.max_depth - self.depth[v])
            m = kids.size
            cur, cur_size = handle[kids[0]], size[kids[0]]
            for j in range(1, m):
                cur_size += size[kids[j]]
                merges.append((cur, handle[kids[j]], height - 1 + j / (m - 1), cur_size))
                cur = n + len(merges) - 1
            handle[v] = cur
        Z = np.asarray(merges, dtype=np.float64)
        # scipy wants rows sorted by height; children always merge strictly
        # lower, so a stable sort keeps every cluster formed before its use
        order = np.argsort(Z[:, 2], kind="stable")
        new_id = np.empty(n - 1, dtype=np.int64)
        new_id[order] = np.arange(n - 1) + n
        Z = Z[order]
        ids = Z[:, :2].astype(np.int64)
        ids = np.where(ids >= n, new_id[np.maximum(ids - n, 0)], ids)
        Z[:, :2] = np.sort(ids, axis=1)
        return Z

    def to_newick(self):
        """Newick representation of the tree.

        Nodes are named ``n<id>`` and every branch has length 1.

        Returns
        -------
        newick : str
            The tree in Newick format, terminated by ``;``.

        References
        ----------
        .. [1] J. Felsenstein, "The Newick tree format",
           https://phylipweb.github.io/phylip/newicktree.html

        Examples
        --------
        >>> ClusterTree([-1, 0, 0, 1, 1]).to_newick()
        '((n3:1,n4:1)n1:1,n2:1)n0;'
        """
        text = [None] * self.node_count
        for v in range(self.node_count - 1, -1, -1):
            kids = self.children[v]
            if kids.size:
                inner = ",".join(f"{text[c]}:1" for c in kids)
                text[v] = f"({inner})n{v}"
                for c in kids:
                    text[c] = None  # free memory early
            else:
                text[v] = f"n{v}"
        return text[0] + ";"

    def _labels_per_node(self):
        """Cluster label of each node as a Python list (None if unlabelled)."""
        return [None if lab < 0 else lab for lab in self.node_to_label.tolist()]

    def to_networkx(self):
        """Convert the tree to a :class:`networkx.DiGraph`.

        Returns
        -------
        graph : networkx.DiGraph
            One node per tree node (same ids) with attributes ``depth``,
            ``n_node_samples``, ``is_leaf`` and ``label`` (cluster label or
            ``None``), and one edge per parent -> child link.

        Raises
        ------
        ImportError
            If networkx is not installed.

        Examples
        --------
        >>> g = ClusterTree([-1, 0, 0]).to_networkx()  # doctest: +SKIP
        >>> sorted(g.edges())  # doctest: +SKIP
        [(0, 1), (0, 2)]
        """
        try:
            import networkx as nx
        except ImportError as exc:  # pragma: no cover - depends on env
            raise ImportError(
                "ClusterTree.to_networkx requires networkx: pip install networkx"
            ) from exc
        graph = nx.DiGraph()
        labels = self._labels_per_node()
        graph.add_nodes_from(
            (
                v,
                {
                    "depth": int(self.depth[v]),
                    "n_node_samples": int(self.n_node_samples[v]),
                    "is_leaf": bool(self.is_leaf[v]),
                    "label": labels[v],
                },
            )
            for v in range(self.node_count)
        )
        graph.add_edges_from(
            zip(self.parent[1:].tolist(), range(1, self.node_count))
        )
        return graph

    def to_pandas(self):
        """Tabulate the nodes as a :class:`pandas.DataFrame`.

        Returns
        -------
        frame : pandas.DataFrame of shape (node_count, 5)
            Indexed by node id (index name ``"node"``) with columns
            ``parent``, ``depth``, ``n_node_samples``, ``is_leaf`` and
            ``label`` (nullable integer, missing for unlabelled nodes).

        Raises
        ------
        ImportError
            If pandas is not installed.

        Examples
        --------
        >>> ClusterTree([-1, 0, 0]).to_pandas()  # doctest: +SKIP
              parent  depth  n_node_samples  is_leaf  label
        node
        0         -1      0               0    False   <NA>
        1          0      1               0     True      0
        2          0      1               0     True      1
        """
        try:
            import pandas as pd
        except ImportError as exc:  # pragma: no cover - depends on env
            raise ImportError(
                "ClusterTree.to_pandas requires pandas: pip install pandas"
            ) from exc
        return pd.DataFrame(
            {
                "parent": self.parent,
                "depth": self.depth,
                "n_node_samples": self.n_node_samples,
                "is_leaf": self.is_leaf,
                "label": pd.array(self._labels_per_node(), dtype="Int64"),
            },
            index=pd.RangeIndex(self.node_count, name="node"),
        )

    def _layout(self):
        """Compute x (DFS leaf order, parents centred) and y (= -depth) of the nodes."""
        x = np.zeros(self.node_count)
        stack, pos = [0], 0
        while stack:
            v = stack.pop()
            if self.is_leaf[v]:
                x[v] = pos
                pos += 1
            else:
                stack.extend(self.children[v][::-1].tolist())
        for v in np.flatnonzero(~self.is_leaf)[::-1]:
            kids = self.children[v]
            x[v] = 0.5 * (x[kids[0]] + x[kids[-1]])
        return x, -self.depth.astype(np.float64)

    def plot(self, ax=None, *, y=None, nodes=None, images=None, thumbnails=None,
             image_shape=None, cmap="gray_r"):
        r"""Draw the tree top-down with matplotlib, optionally with a thumbnail per node.

        Leaves are spread evenly on the x axis in left-to-right depth-first
        order, each internal node is centred over its children and the root
        is at the top. Each node is annotated with its sample count.

        For image data each node can also show a thumbnail: the mean of the
        ``images`` routed to its subtree, or a picture given per node in
        ``thumbnails`` (e.g. the mean of ``model.sample(16, node=v)``). The
        thumbnail is centred on the node and its label sits below it.

        When ``ax`` is None the figure size follows from the tree: one
        column per leaf as wide as the widest label (or thumbnail) and one
        row per depth as tall as a thumbnail and its label, so that no two
        labels or thumbnails overlap (up to 100 inches wide; larger trees
        are squeezed). On a given ``ax`` the labels keep their font size and
        may overlap if the axes are too small for the tree.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, default=None
            Axes to draw on; a new figure sized for the tree is created when
            ``None``.
        y : array-like of shape (n_samples,), default=None
            True classes of samples. Requires ``nodes``; each non-empty node then
            also shows the majority class of its subtree and its share (purity),
            e.g. ``"n=523\n7: 96%"``.
        nodes : array-like of int, shape (n_samples,), default=None
            Node id of each sample (e.g. ``model.apply(X)``). When given,
            the annotated counts are the numbers of these samples in each
            subtree; otherwise ``n_node_samples`` is shown.
        images : {array-like, sparse matrix}, shape (n_samples, n_features) or (n_samples, \*image_shape), default=None
            The samples placed by ``nodes``, one flattened (or already
            shaped) image per row. Each node shows the mean image of the
            samples in its subtree; nodes without samples show none.
        thumbnails : array-like of shape (node_count, n_features) or (node_count, \*image_shape), default=None
            One picture per node, drawn as given; a row containing NaN is
            not drawn. Cannot be combined with ``images``.
        image_shape : tuple of int, default=None
            Shape of one image: ``(height, width)`` or channel-first
            ``(channels, height, width)`` with 1, 3 (RGB) or 4 (RGBA)
            channels. ``None`` reads it from the shape of ``images`` /
            ``thumbnails`` when they have 3 (``(n, h, w)``) or 4
            (``(n, c, h, w)``) dimensions, and otherwise assumes square
            one-channel images (64 features -> 8 x 8).
        cmap : str or matplotlib.colors.Colormap, default="gray_r"
            Colour map of one-channel thumbnails, scaled over all drawn
            thumbnails together (so they can be compared); the default draws
            high values (ink) dark on white. RGB(A) thumbnails are rescaled
            together to [0, 1] when they leave that range.

        Returns
        -------
        ax : matplotlib.axes.Axes
            The axes drawn on. The labels are ``ax.texts`` (one per node, in
            node order, anchored at the node); the thumbnails are
            :class:`~matplotlib.offsetbox.AnnotationBbox` artists in
            ``ax.artists`` with gid ``"thumbnail-<node>"``.

        Raises
        ------
        ValueError
            If ``y`` or ``images`` is given without ``nodes``, or ``y``
            and ``nodes`` differ in length, a node id is unknown, both
            ``images`` and ``thumbnails`` are given, or the images do not
            match ``image_shape`` (wrong number of rows or features, a
            non-square ``n_features`` without ``image_shape``, or a bad
            ``image_shape``).
        ImportError
            If matplotlib is not installed.

        Examples
        --------
        >>> ax = ClusterTree([-1, 0, 0], [5, 3, 2]).plot()  # doctest: +SKIP

        Mean images of a fitted model's training samples, 8 x 8 digits:

        >>> ax = model.tree_.plot(y=y, nodes=model.apply(X), images=X,
        ...                       image_shape=(8, 8))  # doctest: +SKIP
        """
        try:
            import matplotlib.pyplot as plt
            from matplotlib.collections import LineCollection
            from matplotlib.offsetbox import AnnotationBbox, OffsetImage
        except ImportError as exc:  # pragma: no cover - depends on env
            raise ImportError(
                "ClusterTree.plot requires matplotlib: pip install matplotlib"
            ) from exc
        if y is not None and nodes is None:
            raise ValueError("y and nodes must be given together.")
        if images is not None and thumbnails is not None:
            raise ValueError("Give images or thumbnails, not both.")
        if images is not None and nodes is None:
            raise ValueError("images requires nodes, the node of each image.")
        counts = self.n_node_samples
        class_text = {}
        if nodes is not None:
            nodes = self._check_nodes(nodes).ravel()
            counts = self._subtree_sum(np.bincount(nodes, minlength=self.node_count))
        if y is not None:
            y = np.asarray(y).ravel()
            if y.shape[0] != nodes.shape[0]:
                raise ValueError(
                    f"y and nodes must have the same length; got {y.shape[0]} "
                    f"and {nodes.shape[0]}."
                )
            classes, y_idx = np.unique(y, return_inverse=True)
            per_class = np.zeros((self.node_count, classes.size), dtype=np.int64)
            np.add.at(per_class, (nodes, y_idx), 1)
            per_class = self._subtree_sum(per_class)
            for v in np.flatnonzero(counts > 0):
                k = int(per_class[v].argmax())
                class_text[v] = f"\n{classes[k]}: {per_class[v, k] / counts[v]:.0%}"
        pictures, norm = None, None
        if images is not None:
            pictures = self._mean_images(images, nodes, image_shape)
        elif thumbnails is not None:
            pictures = _as_pictures(thumbnails, image_shape, self.node_count, "thumbnails")
        if pictures is not None:
            pictures, norm = _display_pictures(pictures)
        labels = [f"n={counts[v]}{class_text.get(v, '')}" for v in range(self.node_count)]

        # sizes in points: label boxes, the thumbnail, the gaps between them
        fontsize = 8.0
        label_w, label_h = np.array([_label_extent(s, fontsize) for s in labels]).T
        thumb = _THUMBNAIL_POINTS if pictures is not None else 0.0
        framed = thumb + 4.0 if pictures is not None else 0.0  # with its frame's pad and line
        gap = fontsize
        if pictures is not None:
            below = framed / 2 + 1.0 + label_h.max()  # the label hangs below the thumbnail
            above = framed / 2
        else:
            below = above = label_h.max() / 2
        col = max(label_w.max(), framed) + gap  # points per leaf
        row = above + below + gap  # points per depth
        margin_x, margin_above, margin_below = col / 2, above + gap / 2, below + gap / 2

        x, yy = self._layout()
        span_x, span_y = x.max() - x.min(), float(self.max_depth)
        if ax is None:
            width = min(_MAX_FIGURE_INCHES, (span_x * col + 2 * margin_x) / 72)
            height = min(_MAX_FIGURE_INCHES, (span_y * row + margin_above + margin_below) / 72)
            fig = plt.figure(figsize=(max(width, 1.0), max(height, 0.6)))
            ax = fig.add_axes((0, 0, 1, 1))
        # data-unit margins that leave room for the outermost labels and thumbnails
        box = ax.get_position().transformed(ax.figure.transFigure)  # in pixels
        points = 72 / ax.figure.dpi
        ax.set_xlim(*_limits(x.min(), x.max(), margin_x, margin_x, box.width * points, 0.6))
        ax.set_ylim(*_limits(yy.min(), 0.0, margin_below, margin_above, box.height * points, 0.6))
        if self.node_count > 1:
            child = np.arange(1, self.node_count)
            segments = np.stack(
                [
                    np.column_stack([x[self.parent[child]], yy[self.parent[child]]]),
                    np.column_stack([x[child], yy[child]]),
                ],
                axis=1,
            )
            ax.add_collection(LineCollection(segments, colors="0.5", linewidths=1, zorder=1))
        text_options = {"ha": "center", "va": "center"}
        if pictures is not None:
            # the label's box hangs 1 point below the thumbnail's frame
            text_options = {"ha": "center", "va": "top", "textcoords": "offset points",
                            "xytext": (0, -(framed / 2 + 1.0 + _BOX_PAD * fontsize))}
            for v in range(self.node_count):
                picture = pictures[v]
                if picture is None:
                    continue
                image = OffsetImage(picture, zoom=thumb / max(picture.shape[:2]), cmap=cmap,
                                    norm=norm, interpolation="nearest")
                artist = AnnotationBbox(image, (x[v], yy[v]), pad=0.1, zorder=3,
                                        bboxprops={"ec": "0.3", "lw": 0.5})
                artist.set_gid(f"thumbnail-{v}")
                ax.add_artist(artist)
        for v in range(self.node_count):
            ax.annotate(
                labels[v],
                (x[v], yy[v]),
                fontsize=fontsize,
                bbox={"boxstyle": f"round,pad={_BOX_PAD}", "fc": "white", "ec": "0.3"},
                zorder=4,
                gid=f"label-{v}",
                **text_options,
            )
        ax.set_axis_off()
        return ax

    def _mean_images(self, images, nodes, image_shape):
        """Mean image over each node's subtree of the ``images`` placed by ``nodes``.

        Parameters
        ----------
        images : {array-like, sparse matrix} of shape (n_samples, ...)
            See :meth:`plot`.
        nodes : ndarray of shape (n_samples,), dtype int64
            Checked node id of each image.
        image_shape : tuple of int or None
            See :meth:`plot`.

        Returns
        -------
        means : list of (ndarray of shape image_shape or None)
            Per node, the mean image (channel-first as ``image_shape``), or
            None for a node without samples.
        """
        if sparse.issparse(images):
            images = images.toarray()
        images = np.asarray(images, dtype=np.float64)
        if images.ndim < 1 or images.shape[0] != nodes.shape[0]:
            raise ValueError(
                f"images must have one row per entry of nodes ({nodes.shape[0]}); got "
                f"shape {images.shape}."
            )
        shape = _check_image_shape(image_shape, images.shape[1:], "images")
        flat = images.reshape(images.shape[0], -1)
        n = nodes.shape[0]
        routing = sparse.csr_matrix(
            (np.ones(n), (nodes, np.arange(n))), shape=(self.node_count, n)
        )
        sums = self._subtree_sum(np.asarray(routing @ flat))
        counts = self._subtree_sum(np.bincount(nodes, minlength=self.node_count))
        return [
            (sums[v] / counts[v]).reshape(shape) if counts[v] else None
            for v in range(self.node_count)
        ]

    # ------------------------------------------------------------ factories
    @classmethod
    def from_sample_nodes(cls, parent, nodes):
        """Tree with the given ``parent`` array, its sample counts from each sample's node.

        Parameters
        ----------
        parent : array-like of int, shape (node_count,)
            As for :class:`ClusterTree`.
        nodes : array-like of int, shape (n_samples,)
            The node each training sample sits at (a leaf or an internal node).

        Returns
        -------
        tree : ClusterTree
            ``n_node_samples`` counts the samples over each node's subtree.

        Raises
        ------
        ValueError
            If ``parent`` does not describe a tree in topological order, or a
            node id is out of range.

        Examples
        --------
        >>> tree = ClusterTree.from_sample_nodes([-1, 0, 0, 1, 1], [3, 4, 4, 2, 1])
        >>> tree.n_node_samples
        array([5, 4, 1, 1, 2])
        >>> tree.node_to_label
        array([-1, -1,  0,  1,  2])
        """
        tree = cls(parent)
        counts = np.bincount(np.asarray(nodes, dtype=np.int64), minlength=tree.node_count)
        return cls(parent, n_node_samples=tree._subtree_sum(counts))

    @classmethod
    def from_linkage(cls, Z, n_leaves=None):
        """Build a tree by cutting a scipy linkage matrix.

        The flat clusters are obtained by undoing the last ``n_leaves - 1``
        merges of ``Z``; for a monotone ``Z`` with distinct heights this is
        the partition of ``fcluster(Z, n_leaves, "maxclust")``. The merges
        above the cut form the binary internal nodes of the tree (the root
        is the last merge) and the clusters are its leaves.

        Parameters
        ----------
        Z : ndarray of shape (n_samples - 1, 4)
            Linkage matrix over ``n_samples`` observations, e.g. from
            :func:`scipy.cluster.hierarchy.linkage`.
        n_leaves : int, default=None
            Number of clusters (leaves) to keep, between 1 and
            ``n_samples``. ``None`` keeps every observation as a leaf.

        Returns
        -------
        tree : ClusterTree
            Tree with ``2 * n_leaves - 1`` nodes in topological order and
            ``n_node_samples`` filled in.
        nodes : ndarray of shape (n_samples,), dtype int64
            Leaf node id of each observation.

        Raises
        ------
        ValueError
            If ``Z`` is not a valid linkage matrix or ``n_leaves`` is out of
            range.

        See Also
        --------
        to_linkage : The converse.
        scipy.cluster.hierarchy.fcluster : The same flat clusters.

        References
        ----------
        .. [1] SciPy, ``scipy.cluster.hierarchy.linkage`` (the format of the
           linkage matrix),
           https://docs.scipy.org/doc/scipy/reference/generated/scipy.cluster.hierarchy.linkage.html

        Examples
        --------
        >>> import numpy as np
        >>> from scipy.cluster.hierarchy import linkage
        >>> X = np.array([[0.0], [0.1], [5.0], [5.2], [9.0]])
        >>> tree, nodes = ClusterTree.from_linkage(linkage(X, "ward"), n_leaves=3)
        >>> tree.n_leaves, tree.n_node_samples[0]
        (3, np.int64(5))
        """
        Z = np.asarray(Z, dtype=np.float64)
        try:
            hierarchy.is_valid_linkage(Z, throw=True, name="Z")
        except (ValueError, TypeError) as exc:
            raise ValueError(f"Z is not a valid linkage matrix: {exc}") from exc
        n = Z.shape[0] + 1
        if n_leaves is None:
            n_leaves = n
        if not isinstance(n_leaves, numbers.Integral) or not 1 <= n_leaves <= n:
            raise ValueError(
                f"n_leaves must be an integer in [1, {n}]; got {n_leaves!r}."
            )
        k = int(n_leaves)
        ids = Z[:, :2].astype(np.int64)
        root = 2 * n - 2
        # merges above the cut, in descending row order (parents first)
        top_rows = np.arange(n - 2, n - k - 1, -1)
        child_clusters = ids[top_rows].ravel()
        new_id = np.full(2 * n - 1, -1, dtype=np.int64)
        new_id[root] = 0
        new_id[child_clusters] = np.arange(1, 2 * k - 1)
        parent = np.concatenate([[-1], np.repeat(new_id[n + top_rows], 2)])
        cut_clusters = child_clusters[child_clusters < 2 * n - k] if k > 1 else np.array([root])

        nodes = np.empty(n, dtype=np.int64)
        _, cluster_nodes = hierarchy.to_tree(Z, rd=True)
        for c in cut_clusters.tolist():
            nodes[cluster_nodes[c].pre_order()] = new_id[c]
        return cls.from_sample_nodes(parent, nodes), nodes

    @classmethod
    def from_agglomerative(cls, model, n_leaves=None):
        """Build a tree from a fitted :class:`~sklearn.cluster.AgglomerativeClustering`.

        The model's ``children_`` (and ``distances_`` when available,
        otherwise the merge index as height) are converted to a scipy linkage
        matrix, which is then cut with :meth:`from_linkage`.

        Parameters
        ----------
        model : sklearn.cluster.AgglomerativeClustering
            Fitted model with a full merge tree (``compute_full_tree`` must
            not have stopped the merging early).
        n_leaves : int, default=None
            Number of leaves to keep; ``None`` keeps every sample.

        Returns
        -------
        tree : ClusterTree
            See :meth:`from_linkage`.
        nodes : ndarray of shape (n_samples,), dtype int64
            Leaf node id of each training sample.

        Raises
        ------
        ValueError
            If the model is not fitted or its merge tree is incomplete.

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn.cluster import AgglomerativeClustering
        >>> X = np.array([[0.0], [0.1], [5.0], [5.2], [9.0]])
        >>> model = AgglomerativeClustering(compute_distances=True).fit(X)
        >>> tree, nodes = ClusterTree.from_agglomerative(model, n_leaves=3)
        >>> tree.n_leaves
        3
        """
        if not hasattr(model, "children_") or not hasattr(model, "labels_"):
            raise ValueError(
                "model must be a fitted AgglomerativeClustering (no children_ found)."
            )
        children = np.asarray(model.children_, dtype=np.int64)
        n = len(model.labels_)
        if children.shape != (n - 1, 2):
            raise ValueError(
                f"The model's merge tree is incomplete ({children.shape[0]} merges "
                f"for {n} samples); fit it with compute_full_tree=True."
            )
        distances = getattr(model, "distances_", None)
        if distances is None:
            heights = np.arange(1, n, dtype=np.float64)
        else:
            heights = np.asarray(distances, dtype=np.float64)
        sizes = np.ones(2 * n - 1, dtype=np.int64)
        for i, (a, b) in enumerate(children):
            sizes[n + i] = sizes[a] + sizes[b]
        Z = np.column_stack([children, heights, sizes[n:]]).astype(np.float64)
        return cls.from_linkage(Z, n_leaves=n_leaves)

"""Input larger than memory: a NumPy memmap or an h5py/zarr-style array read a block of rows at a time.

:func:`is_lazy_array` says which inputs the estimators keep lazy; :func:`check_lazy_array`
validates one (2-D, numeric, at least ``min_samples`` rows; in fit also finite, in a single
streaming pass that gives the column ranges) and returns a :class:`LazyRows`, which every
batch-wise consumer reads like an array: ``X[a:b]`` or ``X[indices]`` give a float32 ndarray
of those rows only, ``take_rows(X, indices)`` a lazy subset. The training iterator
(:class:`BatchDataset`) reads one batch per step, so neither fit nor inference holds a
float32 copy of the whole ``X``.

Values are used as they are, converted to float32 (as scikit-learn's ``check_array(X,
dtype=np.float32)`` would): a uint8 memmap of pixels is **not** divided by 255, so it is
in [0, 1] (and gets the Bernoulli likelihood by default) only if it holds 0/1 values.
"""

import mmap

import numpy as np
import scipy.sparse as sp
import torch

#: Rows read per block by the validation pass, at most (fewer for wide data: about 64 MiB of float64).
BLOCK_ROWS = 65536
_BLOCK_BYTES = 64 * 2**20

#: Bytes of a read-only or shared memmap mapped by reads after which its pages are handed back
#: to the kernel (``madvise(MADV_DONTNEED)``), so the process' resident set does not grow with the file.
_RELEASE_BYTES = 64 * 2**20


_ACCEPTED_KINDS = "biuf"  # bool, signed and unsigned integers, floating point


def is_lazy_array(X):
    """Whether ``X`` is read lazily: a ``np.memmap``, or an array-like with ``shape``, ``dtype`` and ``__getitem__``.

    In-memory ndarrays, sparse matrices, pandas objects, torch tensors and sequences are
    not (they go through scikit-learn's ``validate_data``). A :class:`LazyRows` is.
    """
    if isinstance(X, (LazyRows, np.memmap)):
        return True
    if isinstance(X, (np.ndarray, list, tuple, torch.Tensor)) or sp.issparse(X):
        return False
    if type(X).__module__.split(".")[0] in ("pandas", "polars", "pyarrow"):
        return False
    return hasattr(X, "shape") and hasattr(X, "dtype") and hasattr(X, "__getitem__")


def looks_like_dataset_without_shape(X):
    """An object with ``dtype`` and ``__getitem__`` (an h5py/zarr-style dataset) but no ``shape``."""
    return (not isinstance(X, (np.ndarray, list, tuple)) and not sp.issparse(X) and hasattr(X, "dtype")
            and hasattr(X, "__getitem__") and not hasattr(X, "shape"))


def _block_rows(n_features):
    return max(1, min(BLOCK_ROWS, _BLOCK_BYTES // (8 * max(1, n_features))))


class LazyRows:
    """Rows of a 2-D array-like (a memmap, an h5py or zarr dataset), read on demand as float32.

    Parameters
    ----------
    data : array-like of shape (n_rows, n_features)
        Supports ``data[a:b]`` (rows ``a`` to ``b``); ``data[indices]`` with an increasing
        index array (NumPy, h5py) or ``data.oindex[indices]`` (zarr) is used when available,
        else the rows are read one slice at a time.
    rows : ndarray of int, optional
        The rows of ``data`` this object holds, in this order (a subset); None: all of them.

    Attributes
    ----------
    shape : tuple of int
    dtype : numpy.dtype
        Always float32: what indexing returns.
    """

    ndim = 2
    dtype = np.dtype(np.float32)

    def __init__(self, data, rows=None):
        self.data = data
        self.rows = None if rows is None else np.asarray(rows, dtype=np.intp)
        n_rows = int(data.shape[0]) if self.rows is None else self.rows.size
        self.shape = (n_rows, int(data.shape[1]))
        self._read_since_release = 0

    def __len__(self):
        return self.shape[0]

    def __repr__(self):
        return f"LazyRows({type(self.data).__name__} of shape {tuple(self.data.shape)}, {self.shape[0]} rows)"

    def __getitem__(self, key):
        """Rows as a float32 ndarray: ``X[a:b]`` (a slice), ``X[indices]`` (an index array) or ``X[i]`` (a row)."""
        if isinstance(key, slice):
            start, stop, step = key.indices(self.shape[0])
            if self.rows is None and step == 1:
                block = np.asarray(self.data[start:max(start, stop)])
                return self._finish(block, block.nbytes)
            return self._take(np.arange(start, stop, step))
        if isinstance(key, (int, np.integer)):
            return self._take(np.array([key]))[0]
        return self._take(np.asarray(key))

    def take(self, indices):
        """A lazy subset: the rows ``indices`` (into this object) of ``data``, nothing read."""
        indices = np.asarray(indices)
        indices = np.flatnonzero(indices) if indices.dtype == bool else indices.astype(np.intp, copy=False)
        return LazyRows(self.data, indices if self.rows is None else self.rows[indices])

    def _take(self, indices):
        if indices.dtype == bool:
            indices = np.flatnonzero(indices)
        indices = indices.astype(np.intp, copy=False)
        if indices.size and (indices.min() < -self.shape[0] or indices.max() >= self.shape[0]):
            raise IndexError(f"row index out of range for {self.shape[0]} rows")
        indices = np.where(indices < 0, indices + self.shape[0], indices)
        rows = indices if self.rows is None else self.rows[indices]
        order = np.argsort(rows, kind="stable")
        unique, inverse = np.unique(rows[order], return_inverse=True)
        scattered = unique.size > 1 and unique[-1] - unique[0] + 1 != unique.size
        if scattered:  # no readahead around each row (it mapped ~0.5 MiB per row on a cold page cache)
            _advise(self.data, "MADV_RANDOM")
        block = np.asarray(self._read_sorted(unique))
        if scattered:
            _advise(self.data, "MADV_NORMAL")
        # a scattered read maps whole page-cache folios around every row (measured: 30-300 MiB for
        # 512 random rows of a 784-byte-row file), far more than its bytes: release after each one
        block = self._finish(block, _RELEASE_BYTES if scattered else block.nbytes)
        out = np.empty((rows.size, self.shape[1]), dtype=np.float32)
        out[order] = block[inverse]
        return out

    def _read_sorted(self, rows):
        """The rows ``rows`` (increasing, unique) of ``data``, in any numeric dtype."""
        data = self.data
        if rows.size == 0:
            return np.empty((0, self.shape[1]), dtype=np.float32)
        if rows[-1] - rows[0] + 1 == rows.size:  # one contiguous run
            return data[int(rows[0]):int(rows[-1]) + 1]
        if isinstance(data, np.ndarray):
            return data[rows]
        if hasattr(data, "oindex"):  # zarr
            return data.oindex[rows]
        try:
            block = np.asarray(data[rows])
            if block.shape == (rows.size, self.shape[1]):
                return block
        except (TypeError, IndexError, ValueError):
            pass
        return np.concatenate([np.asarray(data[int(r):int(r) + 1]) for r in rows])

    def _finish(self, block, touched):
        """``block`` as a fresh float32 ndarray; hands a memmap's pages back to the kernel every ``_RELEASE_BYTES``.

        ``touched``: about how many bytes of pages reading ``block`` touched.
        """
        out = block.astype(np.float32, copy=True) if block.dtype != np.float32 or isinstance(self.data, np.ndarray) \
            else block
        self._read_since_release += touched
        if self._read_since_release >= _RELEASE_BYTES:
            release_pages(self.data)
            self._read_since_release = 0
        return np.ascontiguousarray(out)


def _advise(X, advice):
    """``madvise`` the whole mapping of a ``np.memmap`` (``"MADV_RANDOM"``, ``"MADV_NORMAL"``); else a no-op."""
    mm = getattr(X, "_mmap", None) if isinstance(X, np.memmap) else None
    if isinstance(mm, mmap.mmap) and hasattr(mm, "madvise") and hasattr(mmap, advice):
        try:
            mm.madvise(getattr(mmap, advice))
        except (OSError, ValueError):
            pass


def release_pages(X):
    """Drop the pages of a read-only or shared ``np.memmap`` from the process' resident set.

    They stay in the kernel's page cache (and on disk); the next access reads them back. A
    no-op for other inputs and for copy-on-write memmaps (``mode="c"``), whose modified
    pages would be lost.
    """
    if not isinstance(X, np.memmap) or getattr(X, "mode", None) not in ("r", "r+", "w+", "readonly", "readwrite"):
        return
    mm = getattr(X, "_mmap", None)
    if isinstance(mm, mmap.mmap) and hasattr(mm, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
        try:
            mm.madvise(mmap.MADV_DONTNEED)
        except (OSError, ValueError):
            pass


def take_rows(X, indices):
    """The rows ``indices`` of ``X``: a lazy subset of a :class:`LazyRows`, else ``X[indices]``."""
    return X.take(indices) if isinstance(X, LazyRows) else X[indices]


def check_finite_block(block, start, estimator_name):
    """Raise the clusterer's ``ValueError`` if ``block`` holds NaN or infinity.

    ``block`` is rows of X from row ``start``, named in the message, or (``start=None``) all
    of X's values (e.g. a CSR matrix's ``data``).
    """
    if block.dtype.kind == "f" and not np.isfinite(np.sum(block, dtype=np.float64)):  # no temporary of its size
        where = "" if start is None else f" (in rows {start}..{start + block.shape[0] - 1})"
        raise ValueError(
            f"Input X contains NaN or infinity{where}. {estimator_name} does not accept missing or infinite "
            "values: impute them (e.g. sklearn.impute.SimpleImputer as a Pipeline step before the model) or "
            "drop the rows or columns that hold them.")


def check_lazy_array(X, estimator_name, min_samples=1, scan=True):
    """Validate a lazily read ``X``: shape and dtype, then (``scan``) its values in one pass over row blocks.

    Parameters
    ----------
    X : np.memmap, LazyRows or array-like with ``shape``, ``dtype`` and ``__getitem__``
    estimator_name : str
        For the error messages.
    min_samples : int, default=1
    scan : bool, default=True
        Read ``X`` once, block by block: check that the values are finite and compute the
        column ranges. Without it nothing is read (batch-wise consumers check each batch).

    Returns
    -------
    X : LazyRows
    ranges : tuple of two ndarrays of shape (n_features,), float64, or None
        Minimum and maximum of every column (None without ``scan``).

    Raises
    ------
    TypeError
        If ``X`` has no usable ``shape`` or ``dtype``, or its dtype is not numeric (bool,
        integer or floating point).
    ValueError
        If ``X`` is not 2-D, has fewer than ``min_samples`` rows or no column, a block read
        has another shape than ``X.shape`` says, or ``X`` holds NaN or infinity.
    """
    if not isinstance(X, LazyRows):
        try:
            shape = tuple(int(s) for s in X.shape)
        except (TypeError, ValueError):
            raise TypeError(f"X.shape must be a tuple of ints, got {X.shape!r} ({type(X).__name__}).") from None
        try:
            dtype = np.dtype(X.dtype)
        except TypeError:
            raise TypeError(f"X.dtype must be a NumPy dtype, got {X.dtype!r} ({type(X).__name__}).") from None
        if dtype.kind not in _ACCEPTED_KINDS:
            raise TypeError(
                f"X ({type(X).__name__}) has dtype {dtype}; {estimator_name} reads a memmap or array-like X of a "
                "numeric dtype only: bool, integer (e.g. uint8) or floating point (e.g. float32), converted to "
                "float32 batch by batch.")
        if len(shape) != 2:
            raise ValueError(
                f"Expected a 2-D X of shape (n_samples, n_features), got a {type(X).__name__} of shape {shape}. "
                "Reshape it (e.g. np.memmap(..., shape=(n_samples, n_features)), images flattened to rows).")
        X = LazyRows(X)
    n_samples, n_features = X.shape
    if n_samples < min_samples:
        raise ValueError(f"Found array with {n_samples} sample(s) (shape={X.shape}) while a minimum of "
                         f"{min_samples} is required by {estimator_name}.")
    if n_features < 1:
        raise ValueError(f"Found array with 0 feature(s) (shape={X.shape}) while a minimum of 1 is required by "
                         f"{estimator_name}.")
    if not scan:
        return X, None
    low, high = np.full(n_features, np.inf), np.full(n_features, -np.inf)
    step = _block_rows(n_features)
    for start in range(0, n_samples, step):
        block = X[start:start + step]
        expected = (min(step, n_samples - start), n_features)
        if block.shape != expected:
            raise ValueError(f"Reading rows {start}..{start + expected[0] - 1} of X gave a block of shape "
                             f"{block.shape}, not {expected} as X.shape = {X.shape} says.")
        check_finite_block(block, start, estimator_name)
        np.minimum(low, block.min(axis=0), out=low)
        np.maximum(high, block.max(axis=0), out=high)
    release_pages(X.data)
    return X, (low, high)


class BatchDataset(torch.utils.data.Dataset):
    """A torch dataset reading whole batches of rows of an X at a time, as float32 tensors.

    The DataLoader's batch sampler is unchanged (same order, same generator draws as
    skorch's per-sample dataset); ``__getitems__`` reads a batch's rows in one go (sorted,
    then put back in sampler order), so a memmap is never read row by row and never
    converted as a whole. Use with ``collate_fn=BatchDataset.collate``.

    Parameters
    ----------
    X : LazyRows, ndarray or csr_matrix of shape (n_samples, n_features)
    """

    def __init__(self, X):
        self.X = X

    def __len__(self):
        return self.X.shape[0]

    def _rows(self, indices):
        if isinstance(self.X, LazyRows):
            return self.X[indices]
        block = self.X[np.asarray(indices, dtype=np.intp)]
        return np.asarray(block.toarray() if sp.issparse(block) else block, dtype=np.float32)

    def __getitems__(self, indices):
        x = torch.from_numpy(self._rows(indices))
        return x, torch.zeros(len(indices), 1)  # y: skorch's placeholder, one per sample

    def __getitem__(self, i):
        x, y = self.__getitems__([i])
        return x[0], y[0]

    @staticmethod
    def collate(batch):
        """The DataLoader's ``collate_fn``: a batch from ``__getitems__`` is already collated."""
        return batch

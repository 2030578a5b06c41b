"""Grid search on a Dask cluster, torch threads in its workers, and a worker dying mid-search.

The cluster is local: two worker processes of one thread each, bound to 127.0.0.1. Its
scheduler allows one failure per task (``allowed_failures=1``): a task whose worker dies is
rerun once on another worker, and a second death makes the search fail with ``KilledWorker``.
The helpers sent to the workers are pickled by value (cloudpickle), so that the workers need
not import this file.
"""

import os
import sys
import threading

import joblib
import numpy as np
import pytest
import torch
from sklearn.metrics import check_scoring
from sklearn.model_selection import GridSearchCV
from sklearn.preprocessing import MinMaxScaler
from skorch.callbacks import Callback

from sk_hierclust import _base
from sk_hierclust._testing import make_config, make_planted
from sk_hierclust.metrics import dendrogram_purity_scorer

distributed = pytest.importorskip("distributed")
from distributed import KilledWorker  # noqa: E402
from distributed.client import FutureCancelledError  # noqa: E402

cloudpickle = pytest.importorskip("cloudpickle")  # a dependency of distributed
cloudpickle.register_pickle_by_value(sys.modules[__name__])

PARAM_GRID = {"lr": [1e-3, 3e-3]}


@pytest.fixture(scope="module")
def data():
    X, y = make_planted(n_per_cluster=12, n_features=8)
    return MinMaxScaler().fit_transform(X).astype(np.float32), y


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address=None,  # no dashboard; its HTTP routes on a free local port:
                                       scheduler_kwargs={"allowed_failures": 1, "dashboard_address": "127.0.0.1:0"})
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def _search(callbacks=None):
    """A 2 x 1 grid, 2 folds, scored by the test folds' ELBO and dendrogram purity.

    The ELBO (the model's ``score``) depends on every weight: equal values mean equal models.
    """
    model = make_config("HTVAE").set_params(callbacks=callbacks)
    scoring = {"elbo": check_scoring(model), "purity": dendrogram_purity_scorer}
    return GridSearchCV(model, PARAM_GRID, cv=2, scoring=scoring, refit=False, n_jobs=-1)


def _scores(search):
    """Test scores, shape (n_metrics, n_candidates, n_splits)."""
    return np.array([[search.cv_results_[f"split{k}_test_{metric}"] for k in range(2)]
                     for metric in ("elbo", "purity")]).transpose(0, 2, 1)


@pytest.fixture(scope="module")
def serial_scores(data):
    """The search's test scores with ``n_jobs=1`` in this process."""
    X, y = data
    scores = _scores(_search().set_params(n_jobs=1).fit(X, y))
    assert np.all(np.isfinite(scores))
    assert scores[0, 0, 0] != scores[0, 1, 0]  # the ELBO tells the candidates apart
    return scores


def _in_dask_worker():
    try:
        distributed.get_worker()
    except ValueError:
        return False
    return True


def test_grid_search_on_dask_equals_serial(client, data, serial_scores):
    X, y = data
    with joblib.parallel_backend("dask"):
        search = _search().fit(X, y)
    np.testing.assert_array_equal(_scores(search), serial_scores)
    np.testing.assert_array_equal(search.cv_results_["mean_test_elbo"], serial_scores[0].mean(1))


def test_torch_threads_set_in_worker_and_restored(client, data):
    X, _ = data

    class ThreadRecorder(Callback):
        def initialize(self):
            self.seen = set()
            return self

        def on_epoch_begin(self, net, **kwargs):
            self.seen.add(torch.get_num_threads())

    def fit_in_worker(omp_num_threads):
        """In a worker whose torch has 3 threads: the counts seen in fit and in predict, and after."""
        assert _in_dask_worker()
        before, env = torch.get_num_threads(), dict(os.environ)
        torch.set_num_threads(3)
        if omp_num_threads is not None:
            os.environ["OMP_NUM_THREADS"] = omp_num_threads
        try:
            recorder = ThreadRecorder()
            model = make_config("HTVAE").set_params(callbacks=[recorder]).fit(X)
            in_predict = set()
            for layer in model.net_.module_.modules():
                layer.register_forward_hook(lambda *args: in_predict.add(torch.get_num_threads()))
            model.predict(X[:5])
            return recorder.seen, in_predict, torch.get_num_threads(), env.get("OMP_NUM_THREADS")
        finally:
            torch.set_num_threads(before)
            os.environ.clear()
            os.environ.update(env)

    seen, in_predict, after, env = client.submit(fit_in_worker, None, pure=False).result()
    assert env == "1"  # the Nanny's default environment
    assert seen == {1}  # one thread per task, not the 3 the worker had
    assert in_predict == {1}
    assert after == 3  # restored
    seen, in_predict, after, _ = client.submit(fit_in_worker, "2", pure=False).result()
    assert seen == in_predict == {2} and after == 3


def test_torch_threads_untouched_outside_dask(data):
    X, _ = data
    seen = []

    class ThreadRecorder(Callback):
        def on_epoch_begin(self, net, **kwargs):
            seen.append(torch.get_num_threads())

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        make_config("HTVAE").set_params(callbacks=[ThreadRecorder()]).fit(X)
        assert seen and set(seen) == {2}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_torch_threads_nested_and_concurrent_blocks_restore_their_thread(monkeypatch):
    """The count is set and restored per thread: a task in another worker thread leaves this one's alone."""
    monkeypatch.setattr(_base, "_dask_worker_threads", lambda: 1)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    seen = []

    def task():
        torch.set_num_threads(2)
        with _base._torch_threads():
            seen.append(torch.get_num_threads())
        seen.append(torch.get_num_threads())

    try:
        with _base._torch_threads():
            assert torch.get_num_threads() == 1
            with _base._torch_threads():
                assert torch.get_num_threads() == 1
            assert torch.get_num_threads() == 1  # the nested block restored the outer block's count
            other = threading.Thread(target=task)
            other.start()
            other.join(10)
            assert seen == [1, 2]  # the other thread's block, and its restore
            assert torch.get_num_threads() == 1  # which did not touch this thread's count
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def _die_once(marker):
    """A callback that kills the Dask worker process running it, once (the first to create ``marker``)."""

    class DieOnce(Callback):
        def on_epoch_end(self, net, **kwargs):
            if not _in_dask_worker():
                return
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                return
            os._exit(1)

    return DieOnce()


def test_worker_dying_with_scattered_data_is_retried(client, data, serial_scores, tmp_path):
    """X and y broadcast to every worker: the task of a worker killed mid-fit is rerun elsewhere, results complete."""
    X, y = data
    marker = str(tmp_path / "died")
    with joblib.parallel_backend("dask", scatter=[X, y]):
        search = _search(callbacks=[_die_once(marker)]).fit(X, y)
    assert os.path.exists(marker)  # a worker did die
    np.testing.assert_array_equal(_scores(search), serial_scores)
    client.wait_for_workers(2, timeout=60)  # the Nanny restarted it


def test_worker_dying_fails_or_retries_never_partial(client, data, serial_scores, tmp_path):
    """By default joblib scatters X to one worker: the search raises if that worker dies, else reruns the task.

    Either way it never returns incomplete results.
    """
    X, y = data
    marker = str(tmp_path / "died")
    search = _search(callbacks=[_die_once(marker)])
    try:
        with joblib.parallel_backend("dask"):
            search.fit(X, y)
    except (FutureCancelledError, KilledWorker):
        assert not hasattr(search, "cv_results_")
    else:
        np.testing.assert_array_equal(_scores(search), serial_scores)
    assert os.path.exists(marker)
    client.wait_for_workers(2, timeout=60)


def test_worker_dying_every_time_fails_the_search(client, data):
    """A task that kills every worker it runs on: the search raises, it never returns partial results."""
    X, y = data

    class AlwaysDie(Callback):
        def on_epoch_end(self, net, **kwargs):
            if _in_dask_worker():
                os._exit(1)

    search = _search(callbacks=[AlwaysDie()])
    with joblib.parallel_backend("dask", scatter=[X, y]), pytest.raises((FutureCancelledError, KilledWorker)):
        search.fit(X, y)  # error_score=np.nan (the default) does not hide it: the fit did not fail, its worker did
    assert not hasattr(search, "cv_results_")

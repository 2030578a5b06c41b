"""TreeVAE benchmark on MNIST, Fashion-MNIST and 20 Newsgroups: clustering quality, fit time, epoch cost.

Fits TreeVAE on the training split (one or several seeds), evaluates on the test split and
prints dendrogram purity (DP), leaf purity (LP), cluster accuracy (ACC) and NMI, next to, from
the same run: Ward linkage (scipy) on the raw test features, and "VAE + Ward": a plain VAE
with the package's encoder (``_baselines.vae_embedding``), trained for as many passes over the
training data as TreeVAE's fit made (its growth epochs on subsets count by their size), Ward
on its test embeddings. Baselines are cut at 20 leaves for DP/LP and 10 for ACC/NMI (images), 30 and 20
(20 Newsgroups). With several seeds, a mean ± std table follows. Each seed also prints the
split consistency and balance by depth of the test trees (``_baselines.split_consistency``):
where a tree's dendrogram purity is lost.

Usage::

    python benchmarks/bench_treevae.py --dataset mnist --data-home ../shared/data --seeds 0 1 2
    python benchmarks/bench_treevae.py --dataset fashion_mnist --augment affine --contrastive-weight 1
    python benchmarks/bench_treevae.py --timing      # CPU seconds per epoch at 2, 5, 10, 20 leaves

Targets on a 2-core CPU (issue 10): MNIST DP >= 0.80, LP >= 0.90, ACC >= 0.85, NMI >= 0.82;
Fashion DP >= 0.50, LP >= 0.70, ACC >= 0.60, NMI >= 0.62; 20 Newsgroups DP and LP above Ward;
fit <= 30 min; one full-tree epoch over 60,000 images at 10 leaves <= 15 s CPU.
"""

import argparse
import copy
import os
import time

import _baselines
import joblib
import numpy as np
import torch

from sk_hierclust import TreeVAE
from sk_hierclust.datasets import load_dataset
from sk_hierclust.metrics import hierarchy_scores


def epoch_seconds(model, X, n_leaves_list):
    """Seconds of one full-tree training epoch over X, routers as trained, at several leaf counts.

    A copy of the fitted model is cut back to each leaf count (the deepest sub-trees that fit
    the excess are pruned) or grown with untrained children, then trained for one epoch.
    """
    out = {}
    for n_leaves in n_leaves_list:
        est = copy.deepcopy(model)
        module = est.net_.module_
        while len(module.leaf_slots) > n_leaves:
            excess = len(module.leaf_slots) - n_leaves
            n_under = {v: sum(v in module.path(leaf) for leaf in module.leaf_slots)
                       for v in range(1, len(module.parent)) if module.alive[v]}
            node = max((v for v, n in n_under.items()
                        if n <= excess and len(module.live_children(module.parent[v])) == 2), key=module.depth)
            module.prune(node)
        while len(module.leaf_slots) < n_leaves:
            module.start_split(min(module.leaf_slots, key=module.depth))
            module.commit_split()
        start = time.perf_counter()
        est._run_phase(est.net_, X, "timing", 1)
        out[n_leaves] = time.perf_counter() - start
    return out


# ---- --timing: CPU seconds of one full-tree training epoch (issue 10 §2) -------------------
# Self-contained (used by ``--timing`` only): each timing builds a tree of N leaves, sharpens its
# routers as training does, and trains it for a few batches under one thread.

TIMING_LEAVES = (2, 5, 10, 20)
TIMING_EPOCH_IMAGES = 60_000
TIMING_BATCH = 256
TIMING_LOGIT_SCALE = 25.0


def _timing_estimator(kind, X, n_leaves, leaf_prob_threshold, seed=0):
    """A TreeVAE net (untrained) whose module is grown by hand to ``n_leaves`` balanced leaves.

    The shallowest leaf is split until the tree has ``n_leaves`` leaves; returns the
    estimator (``net_`` set) and the validated X.
    """
    est = TreeVAE(encoder=kind, input_shape=(1, 28, 28), max_depth=8, batch_size=TIMING_BATCH,
                  leaf_prob_threshold=leaf_prob_threshold, random_state=seed)
    X = est._validate_fit_data(X)  # the steps of BaseDeepClusterer._fit, up to training
    est._check_params_vs_input(X)
    with est._seeded(est.device) as s:
        est.net_ = est._make_net(est._build_module(X), s)
        module = est.net_.module_
        while len(module.leaf_slots) < n_leaves:
            module.start_split(min(module.leaf_slots, key=lambda v: (module.depth(v), v)))
            module.commit_split()
    return est, X


def _sharpen_routers(module, x, logit_scale=TIMING_LOGIT_SCALE):
    """Make the inference routers send each sample mostly to one leaf, every leaf a similar share.

    Top-down, each binary node's last router layer is rescaled so that its logits on ``x``
    (train mode, batch-norm statistics weighted by reaching the node, as in training) have
    weighted standard deviation ``logit_scale`` and send to the right child the fraction of
    the node's samples equal to that child's share of the node's leaves: what a trained tree
    looks like (a few leaves above the threshold per sample, none nearly empty).
    """
    module.train()
    n_under = {v: sum(v in module.path(leaf) for leaf in module.leaf_slots) for v in range(len(module.parent))}
    last = module.router_q.linears[-1]
    with torch.no_grad():
        d = module.bottom_up_features(x)
        levels, _ = module.plan.on(x.device)
        prob = x.new_ones(1, x.shape[0])
        for k, level in enumerate(levels):
            p_int = prob[level["int_pos"]]
            logits = module.router_q(d[k], level["int_rows"], p_int).squeeze(-1)
            for m, v in enumerate(level["int_rows"].tolist()):
                live = module.live_children(v)
                if len(live) < 2:
                    continue
                w, lg = p_int[m] / p_int[m].sum(), logits[m]
                order = torch.argsort(lg)
                cum = torch.cumsum(w[order], 0)
                cut = lg[order][torch.searchsorted(cum, 1 - n_under[live[1]] / n_under[v]).clamp(max=len(lg) - 1)]
                std = ((w * (lg - (w * lg).sum()).square()).sum()).sqrt().clamp_min(1e-6)
                scale = logit_scale / std
                last.weight[v] *= scale
                last.bias[v] = (last.bias[v] - cut) * scale
            q = torch.sigmoid(module.router_q(d[k], level["int_rows"], p_int)).squeeze(-1)
            prob = p_int[level["par"]] * module._children_probs(q, level)


def _pairs_per_sample(module, x):
    """Mean number of leaves per sample with ``P(leaf | x) >= leaf_prob_threshold`` (train mode)."""
    module.train()
    with torch.no_grad():
        probs = module.leaf_probabilities(x)
    return float((probs >= module.leaf_prob_threshold).sum(0).double().mean())


def _step_flops(module, x):
    """FLOPs (``FlopCounterMode``) of one training step's forward and backward on the batch ``x``.

    Counted as the module runs: every leaf decoder on the whole batch, the node networks on the
    pairs above the threshold, each node's padded to the largest node's count at its depth.
    """
    from torch.utils.flop_counter import FlopCounterMode

    module.train()
    counter = FlopCounterMode(display=False)
    try:
        with counter:
            sum(term.mean() for term in module(x).values()).backward()
    finally:
        module.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def _sgemm_rate(n=1024, reps=5):
    """Single-thread float32 matmul rate (FLOP/s) of ``n x n`` matrices, by CPU time."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.process_time()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.process_time() - start)


def timing_epoch(kind, X, n_leaves, n_batches, leaf_prob_threshold):
    """CPU seconds of one full-tree training epoch over 60,000 images, measured on ``n_batches``.

    Returns ``(seconds, (pairs_before, pairs_after), flops_per_step)``: the CPU time
    (``time.process_time``) of training on ``n_batches`` batches of ``X`` (the estimator's
    own epoch: skorch loop, loss, backward, Adam) scaled to 60,000 images, the mean number
    of (sample, leaf) pairs above the threshold per sample before and after those batches, and the
    FLOPs of one training step (:func:`_step_flops`).
    """
    est, X = _timing_estimator(kind, X, n_leaves, leaf_prob_threshold)
    module = est.net_.module_
    rng = np.random.RandomState(0)
    _sharpen_routers(module, torch.as_tensor(X[rng.choice(len(X), 2048, replace=False)]))
    batch = torch.as_tensor(X[rng.choice(len(X), TIMING_BATCH, replace=False)])
    pairs = _pairs_per_sample(module, batch)
    flops = _step_flops(module, batch)
    est._run_phase(est.net_, X[:3 * TIMING_BATCH], "warmup", 1)  # first-call costs
    subset = X[rng.choice(len(X), n_batches * TIMING_BATCH, replace=False)]
    start = time.process_time()
    est._run_phase(est.net_, subset, "timing", 1)
    seconds = time.process_time() - start
    pairs_after = _pairs_per_sample(module, batch)  # routers trained on (sharper still, usually)
    return seconds * TIMING_EPOCH_IMAGES / len(subset), (pairs, pairs_after), flops


def timing_main(data_home, n_batches, leaves=TIMING_LEAVES, kinds=("conv", "mlp"),
                leaf_prob_threshold=TreeVAE().leaf_prob_threshold):
    """Print ``epoch_cpu_s``, ``floor_s`` and ``ratio_to_floor`` lines (see ``--timing``)."""
    import sk_hierclust
    from sk_hierclust.datasets import load_mnist

    torch.set_num_threads(1)
    X = load_mnist(data_home=data_home)[0]
    steps = TIMING_EPOCH_IMAGES / TIMING_BATCH
    print(f"# one thread, CPU time (time.process_time); each epoch measured on {n_batches} batches of "
          f"{TIMING_BATCH} MNIST images and scaled to {TIMING_EPOCH_IMAGES}; trees grown to N balanced "
          f"leaves, routers sharpened (logit sd {TIMING_LOGIT_SCALE:g}) so each sample reaches mostly one leaf; "
          f"leaf_prob_threshold {leaf_prob_threshold:g}; "
          f"sk_hierclust from {os.path.dirname(os.path.dirname(sk_hierclust.__file__))}", flush=True)
    results = {}
    for n_leaves in leaves:
        row = {kind: timing_epoch(kind, X, n_leaves, n_batches, leaf_prob_threshold) for kind in kinds}
        results[n_leaves] = row
        print(f"epoch_cpu_s leaves={n_leaves} " + " ".join(f"{k}={v[0]:.1f}" for k, v in row.items())
              + "  (pairs/sample " + " ".join(f"{k}={v[1][0]:.2f}->{v[1][1]:.2f}" for k, v in row.items())
              + ")", flush=True)
    rate = _sgemm_rate()
    ref = 10 if 10 in results else leaves[-1]
    floor = {k: v[2] * steps / rate for k, v in results[ref].items()}
    print(f"floor_s leaves={ref} " + " ".join(f"{k}={v:.1f}" for k, v in floor.items())
          + "  (FLOPs/step " + " ".join(f"{k}={results[ref][k][2] / 1e9:.2f}G" for k in floor)
          + f", {steps:.1f} steps/epoch, sgemm {rate / 1e9:.0f} GFLOP/s one thread)")
    print(f"ratio_to_floor leaves={ref} " + " ".join(f"{k}={results[ref][k][0] / v:.2f}" for k, v in floor.items()))
    if 2 in results and ref != 2:
        print(f"ratio_to_2_leaves leaves={ref} "
              + " ".join(f"{k}={results[ref][k][0] / results[2][k][0]:.2f}" for k in kinds))
    return results


#: Per data set: the encoder, input shape, latent size, depth, leaves asked for, and the leaf
#: counts of the baselines' DP/LP and ACC/NMI cuts (issue 10: 20 and 10 for the images, 30 and
#: 20 for 20 Newsgroups; the authors' news20 config has latent 4 and len(mlp_layers) - 1 = 6).
DATASET_SETTINGS = {
    "mnist": dict(encoder="conv", input_shape=(1, 28, 28), latent_dim=8, max_depth=6, max_leaves=10, cuts=(20, 10)),
    "fashion_mnist": dict(encoder="conv", input_shape=(1, 28, 28), latent_dim=8, max_depth=6, max_leaves=10,
                          cuts=(20, 10)),
    "20newsgroups": dict(encoder="mlp", input_shape=None, latent_dim=4, max_depth=6, max_leaves=20, cuts=(30, 20)),
}


def ward_rows(name, features, y, cuts):
    """Ward linkage (scipy) on ``features``, cut at each leaf count of ``cuts`` (DP/LP cut, ACC/NMI cut).

    Returns the score rows and the :func:`_baselines.split_consistency` of the DP/LP cut, by row name.
    """
    rows, consistency = {}, {}
    for n_leaves, (tree, nodes) in zip(cuts, _baselines.ward_tree(features, list(cuts))):
        suffix = " (ACC/NMI cut)" if n_leaves == cuts[-1] else ""
        rows[f"{name}, {n_leaves} leaves{suffix}"] = hierarchy_scores(y, tree, nodes, tree.node_to_label[nodes])
        if n_leaves == cuts[0]:
            consistency[f"{name}, {n_leaves} leaves"] = _baselines.split_consistency(y, tree, nodes)
    return rows, consistency


def vae_ward_rows(X_train, X_test, y_test, settings, n_epochs, seed):
    """Ward on the test embeddings of a plain VAE trained ``n_epochs`` epochs (:func:`ward_rows`), its CPU seconds."""
    (_, Z_test), vae_s = _baselines.timed(
        _baselines.vae_embedding, X_train, X_test, n_epochs=n_epochs, latent_dim=settings["latent_dim"],
        encoder=settings["encoder"], input_shape=settings["input_shape"], random_state=seed)
    return (*ward_rows("VAE + Ward", Z_test, y_test, settings["cuts"]), vae_s)


def full_data_epochs(model, n_samples):
    """Passes over all the data that ``model``'s fit made: its training samples, all phases, / ``n_samples``."""
    seen = sum(batch["train_batch_size"] for epoch in model.net_.history for batch in epoch["batches"])
    return max(1, round(seen / n_samples))


def run_seed(args, settings, data, seed, raw_ward):
    """Fit TreeVAE with one seed; return its rows (model, Ward, VAE + Ward) and the model.

    ``raw_ward``: :func:`ward_rows` of the raw test features, computed once for all seeds.

    Also prints the split consistency by depth (:func:`_baselines.split_consistency`) of the
    test trees: TreeVAE's, Ward's and VAE + Ward's (DP/LP cut).
    """
    X_train, y_train, X_test, y_test = data
    model = TreeVAE(max_leaves=args.max_leaves or settings["max_leaves"], max_depth=settings["max_depth"],
                    latent_dim=settings["latent_dim"], n_epochs_initial=args.epochs[0], n_epochs_grow=args.epochs[1],
                    n_epochs=args.epochs[2], encoder=args.encoder or settings["encoder"],
                    input_shape=settings["input_shape"], augment=args.augment,
                    contrastive_weight=args.contrastive_weight, split_decoders=args.split_decoders,
                    n_split_init=args.n_split_init, kl_rate=args.kl_rate, leaf_prob_threshold=args.leaf_prob_threshold,
                    n_epochs_intermediate=args.intermediate[0], intermediate_every=args.intermediate[1],
                    lr_step_epochs=args.lr_step_epochs,
                    device=args.device, verbose=args.verbose, random_state=seed)
    print(f"seed {seed}: fitting {model!r} on {X_train.shape[0]} {args.dataset} samples ...", flush=True)
    start = time.process_time()
    model.fit(X_train)
    fit_cpu = time.process_time() - start
    if args.save:
        joblib.dump(model, f"{args.save}.seed{seed}")
    n_grown = 2 + len({h["phase"] for h in model.history_ if h["phase"].startswith("grow:")})
    print(f"seed {seed}: fit {model.fit_time_:.0f} s wall, {fit_cpu:.0f} s CPU; {n_grown} leaves grown, "
          f"{len(model.net_.module_.leaf_slots)} after pruning, "
          f"{len(model.tree_.label_to_node)} non-empty after fine-tuning, tree depth {model.tree_.max_depth}; "
          f"test ELBO {model.score(X_test):.1f} nats", flush=True)
    test_nodes = model.apply(X_test)
    rows = {"TreeVAE train": hierarchy_scores(y_train, model.tree_, model.apply(X_train), model.predict(X_train)),
            "TreeVAE test": hierarchy_scores(y_test, model.tree_, test_nodes, model.predict(X_test))}
    vae_epochs = full_data_epochs(model, X_train.shape[0])
    vae_rows, vae_consistency, vae_s = vae_ward_rows(X_train, X_test, y_test, settings, vae_epochs, seed)
    rows.update(raw_ward[0])
    rows.update(vae_rows)
    consistency = {"TreeVAE test": _baselines.split_consistency(y_test, model.tree_, test_nodes),
                   **raw_ward[1], **vae_consistency}
    print(f"seed {seed}: splits by depth, consistency / balance (share of a node's test samples in the child "
          "holding most of their class / in its largest child):")
    for name, by_depth in consistency.items():
        print(f"  {name:30s}" + "".join(f"  depth {d}: {c:.3f} / {b:.3f}" for d, (c, b) in by_depth.items()))
    print(f"seed {seed}: the VAE of the VAE + Ward rows trained {vae_epochs} epochs, as many passes over the data "
          f"as TreeVAE's fit ({vae_s:.0f} s CPU)")
    phases = {}
    for row in model.history_:
        phases.setdefault(row["phase"].split(":")[0], []).append(row["dur"])
    print(f"seed {seed}: seconds per epoch, by phase: "
          + ", ".join(f"{k} {np.mean(v):.1f} (x{len(v)})" for k, v in phases.items()))
    return rows, model


def print_table(title, rows):
    print(f"\n{title}\n{'':36s}" + "".join(f"{k:>16s}" for k in ("DP", "LP", "ACC", "NMI")))
    for name, row in rows.items():
        print(f"{name:36s}" + "".join(f"{v:>16s}" if isinstance(v, str) else f"{v:16.3f}" for v in row.values()))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = TreeVAE().get_params()
    parser.add_argument("--dataset", default="mnist", choices=sorted(DATASET_SETTINGS))
    parser.add_argument("--data-home", default=None)
    parser.add_argument("--max-leaves", type=int, default=None, help="default: 10 (images), 20 (20newsgroups)")
    parser.add_argument("--epochs", type=int, nargs=3, default=(30, 15, 30), metavar=("INITIAL", "GROW", "FINETUNE"))
    parser.add_argument("--encoder", default=None, choices=["mlp", "conv", "conv_pool"],
                        help="default: conv (images), mlp (20newsgroups)")
    parser.add_argument("--augment", default=None, choices=["affine"])
    parser.add_argument("--contrastive-weight", type=float, default=0.0)
    parser.add_argument("--split-decoders", default="fresh", choices=["fresh", "copy"],
                        help="decoders of a split leaf's children: new (default, the authors') or copies of its own")
    parser.add_argument("--n-split-init", type=int, default=defaults["n_split_init"], metavar="K",
                        help="candidate sub-trees trained per split, the lowest negative ELBO kept (default: "
                             "TreeVAE's, %(default)s)")
    parser.add_argument("--intermediate", type=int, nargs=2, metavar=("EPOCHS", "EVERY"),
                        default=(defaults["n_epochs_intermediate"], defaults["intermediate_every"]),
                        help="TreeVAE's n_epochs_intermediate and intermediate_every: train the whole tree EPOCHS "
                             "epochs after every EVERY splits (default: TreeVAE's, 0 3: none; the authors' 80 3)")
    parser.add_argument("--lr-step-epochs", type=int, default=defaults["lr_step_epochs"], metavar="S",
                        help="TreeVAE's lr_step_epochs: the learning rate times lr_step_gamma (0.1) every S epochs "
                             "of each phase (default: TreeVAE's, none; the authors' 100)")
    parser.add_argument("--kl-rate", type=float, default=None, metavar="R",
                        help="per-epoch KL-weight step of TreeVAE's kl_rate (the authors' 0.001); default: the ramp")
    parser.add_argument("--leaf-prob-threshold", type=float, default=defaults["leaf_prob_threshold"], metavar="T",
                        help="TreeVAE's leaf_prob_threshold, in fits and in --timing (default: TreeVAE's, %(default)g)")
    parser.add_argument("--n-train", type=int, default=None, help="use only the first N training samples")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--verbose", type=int, default=0)
    parser.add_argument("--save", default=None, metavar="PATH", help="joblib-dump each fitted model to PATH.seedN")
    parser.add_argument("--epoch-timing", action="store_true",
                        help="also time one full-tree epoch of the fitted model at 2, 5 and 10 leaves")
    parser.add_argument("--timing", action="store_true",
                        help="only print the CPU seconds of a full-tree epoch at 2, 5, 10, 20 leaves (one thread)")
    parser.add_argument("--timing-batches", type=int, default=40, help="batches timed per epoch in --timing")
    parser.add_argument("--timing-leaves", type=int, nargs="+", default=list(TIMING_LEAVES),
                        help="leaf counts of --timing")
    args = parser.parse_args(argv)
    if args.timing:
        timing_main(args.data_home or "/work/shared/data", args.timing_batches, tuple(args.timing_leaves),
                    leaf_prob_threshold=args.leaf_prob_threshold)
        return

    settings = DATASET_SETTINGS[args.dataset]
    X_train, y_train, X_test, y_test = load_dataset(args.dataset, data_home=args.data_home)
    data = (X_train[:args.n_train], y_train[:args.n_train], X_test, y_test)
    raw_ward = ward_rows("Ward", X_test, y_test, settings["cuts"])
    per_seed = {}
    for seed in args.seeds:
        rows, model = run_seed(args, settings, data, seed, raw_ward)
        print_table(f"{args.dataset}, seed {seed} (fit on {data[0].shape[0]} training samples, test rows on "
                    f"{X_test.shape[0]} test samples)", rows)
        per_seed[seed] = rows
        if args.epoch_timing:
            timing = epoch_seconds(model, data[0], (2, 5, 10))
            print("seconds per full-tree epoch over the training set (trained routers): "
                  + ", ".join(f"{k} leaves {v:.1f}" for k, v in timing.items()))
    if len(per_seed) > 1:
        summary = {}
        for name in next(iter(per_seed.values())):
            values = np.array([[rows[name][k] for k in ("DP", "LP", "ACC", "NMI")] for rows in per_seed.values()])
            summary[name] = {k: f"{m:.3f} ± {s:.3f}" for k, m, s in
                             zip(("DP", "LP", "ACC", "NMI"), values.mean(0), values.std(0))}
        print_table(f"{args.dataset}, mean ± std over seeds {args.seeds}", summary)


if __name__ == "__main__":
    main()

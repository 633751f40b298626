"""MRR / H@k and PRE on hand-constructed cases with known ranks and nearest neighbours."""

from __future__ import annotations

import math

import pytest
import torch

from equivision.benchmarks import retrieval as R


def test_ranks_and_mrr_hand_case():
    emb = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]])  # one object, three views
    queries = torch.tensor([[[2.0, 0.0], [1.0, 0.1], [0.0, 1.0]]])
    # view 0: sims (1, 0, -1) -> rank 1; view 1: sims ~(0.995, 0.0995, -0.995) -> rank 2;
    # view 2: sims (0, 1, 0): view 1 is better, view 0 ties (counted in the query's favour) -> rank 2
    ranks = R.true_view_ranks(queries, emb)
    assert ranks.tolist() == [[1, 2, 2]]
    m = R.rank_metrics(ranks, (1, 2, 5))
    assert m == pytest.approx({"MRR": (1 + 0.5 + 0.5) / 3, "H@1": 1 / 3, "H@2": 1.0, "H@5": 1.0})


def test_ranks_are_chunk_independent():
    g = torch.Generator().manual_seed(0)
    emb, q = torch.randn(7, 5, 6, generator=g), torch.randn(7, 5, 6, generator=g)
    assert torch.equal(R.true_view_ranks(q, emb, chunk=2), R.true_view_ranks(q, emb, chunk=100))


def test_predict_from_view0_uses_view0_and_relative_latents():
    """A perfect predictor (returns the target view's embedding) ranks every view first;
    the identity predictor only gets view 0 right."""
    n, v = 3, 4
    emb = torch.eye(n * v)[: n * v].reshape(n, v, n * v)
    lat = torch.zeros(n, v, 7, dtype=torch.float64)
    lat[..., 0] = torch.arange(v, dtype=torch.float64)  # latents carry the view index
    lat[..., 1] = torch.arange(n, dtype=torch.float64)[:, None]  # ... and the object index
    calls = []

    def perfect(e0, la, lb):
        calls.append(la[:, 0].clone())
        return emb[lb[:, 1].long(), lb[:, 0].long()]

    q = R.predict_from_view0(perfect, emb, lat, batch_size=5)
    assert torch.cat(calls).eq(0).all()  # always conditioned on view 0
    assert R.rank_metrics(R.true_view_ranks(q, emb))["MRR"] == 1.0
    ident = R.predict_from_view0(lambda e0, la, lb: e0, emb, lat)
    ranks = R.true_view_ranks(ident, emb)
    assert ranks[:, 0].eq(1).all() and ranks[:, 1:].gt(1).all()


def test_nearest_neighbours_chunked_equals_full():
    g = torch.Generator().manual_seed(1)
    q, bank = torch.randn(37, 8, generator=g), torch.randn(53, 8, generator=g)
    full = (torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(bank, dim=1).T).argmax(1)
    assert torch.equal(R.nearest_neighbours(q, bank, query_chunk=5, bank_chunk=7), full)


def test_pre_with_known_nearest_neighbours():
    # 2 objects x 2 views; embeddings are one-hot rows e0..e3 (row = object * 2 + view)
    emb = torch.eye(4).reshape(2, 2, 4)
    half = math.pi / 2
    lat = torch.zeros(2, 2, 7, dtype=torch.float64)
    lat[0, 1, 2] = half  # object 0 view 1: 90° about z
    lat[1, 0, 0] = math.pi  # object 1 view 0: 180° about x
    # queries chosen to retrieve: (0,0)->e0, (0,1)->e3, (1,0)->e1, (1,1)->e1
    queries = torch.stack([torch.eye(4)[i] for i in (0, 3, 1, 1)]).reshape(2, 2, 4)
    m, art = R.retrieval_metrics(queries, emb, lat, ks=(1,), query_chunk=1, bank_chunk=3)
    # errors 1 - <q_t, q_nn>^2: identical -> 0; z90 vs identity -> 0.5; x180 vs z90 -> 1;
    # identity vs z90 -> 0.5
    assert art["pre"].tolist() == pytest.approx([0.0, 0.5, 1.0, 0.5], abs=1e-9)
    assert m["PRE"] == pytest.approx(0.5)
    assert m["nn_same_object"] == pytest.approx(0.25)
    assert m["queries"] == 4


def test_prediction_error_is_sign_free():
    q = torch.tensor([[0.0, 0.0, math.sqrt(0.5), math.sqrt(0.5)]])
    assert R.prediction_error(q, -q).item() == pytest.approx(0.0)
    assert R.prediction_error(q, torch.tensor([[0.0, 0.0, 0.0, 1.0]])).item() == pytest.approx(0.5)

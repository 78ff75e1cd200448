"""GLUE and tagging metrics against scipy/sklearn references and hand-checked span counts."""

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from electra_jax.finetune import metrics as gm

RNG = np.random.default_rng(0)
LABELS = RNG.integers(0, 2, 200)
PREDS = np.where(RNG.random(200) < 0.7, LABELS, 1 - LABELS)
LABELS3 = RNG.integers(0, 3, 300)
PREDS3 = np.where(RNG.random(300) < 0.6, LABELS3, RNG.integers(0, 3, 300))
# Rounded so that the ranks have many ties.
X = np.round(RNG.normal(size=150), 1)
Y = np.round(X + RNG.normal(size=150), 1)


def test_accuracy_matches_sklearn():
  assert gm.accuracy(LABELS3, PREDS3) == pytest.approx(skm.accuracy_score(LABELS3, PREDS3), abs=1e-12)


def test_binary_f1_matches_sklearn():
  assert gm.binary_f1(LABELS, PREDS) == pytest.approx(skm.f1_score(LABELS, PREDS), abs=1e-12)
  assert gm.binary_f1([0, 0, 1], [0, 0, 0]) == 0.0


@pytest.mark.parametrize("labels,preds", [(LABELS, PREDS), (LABELS3, PREDS3)])
def test_matthews_matches_sklearn(labels, preds):
  assert gm.matthews_corrcoef(labels, preds) == pytest.approx(
      skm.matthews_corrcoef(labels, preds), abs=1e-12)


def test_matthews_constant_prediction_is_zero():
  assert gm.matthews_corrcoef([0, 1, 1, 0], [1, 1, 1, 1]) == 0.0


def test_pearson_spearman_match_scipy_with_ties():
  assert gm.pearson(X, Y) == pytest.approx(stats.pearsonr(X, Y)[0], abs=1e-12)
  assert gm.spearman(X, Y) == pytest.approx(stats.spearmanr(X, Y)[0], abs=1e-12)
  np.testing.assert_array_equal(gm.rankdata(X), stats.rankdata(X))


def test_bad_shapes_name_the_shapes():
  with pytest.raises(ValueError, match=r"\(3,\) and \(2,\)"):
    gm.accuracy([1, 2, 3], [1, 2])


def test_extract_spans_bio_and_iob1():
  # B-NP I-NP | B-VP | O | B-NP (two spans, NP then PP) ...
  assert gm.extract_spans(["B-NP", "I-NP", "B-VP", "O", "B-NP", "B-NP"]) == {
      ("NP", 0, 1), ("VP", 2, 2), ("NP", 4, 4), ("NP", 5, 5)}
  # IOB1 (CoNLL-2003 original): an I- tag after O or another type starts a chunk.
  assert gm.extract_spans(["I-PER", "I-PER", "O", "I-LOC", "I-ORG", "B-ORG"]) == {
      ("PER", 0, 1), ("LOC", 3, 3), ("ORG", 4, 4), ("ORG", 5, 5)}
  # IOBES
  assert gm.extract_spans(["S-A", "B-B", "E-B", "B-B", "I-B", "E-B"]) == {
      ("A", 0, 0), ("B", 1, 2), ("B", 3, 5)}


def test_span_f1_hand_checked():
  gold = [["B-NP", "I-NP", "B-VP", "O"], ["B-PP", "B-NP", "I-NP"]]
  pred = [["B-NP", "I-NP", "B-NP", "O"], ["B-PP", "B-NP", "B-NP"]]
  # gold spans: NP(0,1) VP(2) | PP(0) NP(1,2) = 4; predicted: NP(0,1) NP(2) | PP(0) NP(1) NP(2) = 5
  # correct: NP(0,1), PP(0) = 2
  out = gm.span_f1(gold, pred)
  assert out["precision"] == pytest.approx(2 / 5)
  assert out["recall"] == pytest.approx(2 / 4)
  assert out["f1"] == pytest.approx(2 * 0.4 * 0.5 / 0.9)

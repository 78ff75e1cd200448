"""The SQuAD scorer on hand-checked cases: normalisation, multiple golds, v2.0 no-answer."""

import pytest

from electra_jax.finetune import squad_eval as se


def test_normalisation_strips_articles_punctuation_case_space():
  assert se.normalize_answer("The  Eiffel Tower!") == "eiffel tower"
  assert se.normalize_answer("an apple, a pear") == "apple pear"
  # Articles only as whole words; "theory" keeps its "the".
  assert se.normalize_answer("Theory of a-b") == "theory of ab"


def test_exact_and_f1_single():
  assert se.exact_match("the Eiffel tower.", "Eiffel Tower") == 1.0
  # pred tokens: eiffel tower in paris; gold: eiffel tower -> p=2/4 r=1 f1=2/3
  assert se.f1("Eiffel Tower in Paris", "the Eiffel Tower") == pytest.approx(2 / 3)
  assert se.f1("London", "Paris") == 0.0


def test_empty_strings_differ_between_versions():
  assert se.f1("", "", version="v2.0") == 1.0
  assert se.f1("", "", version="v1.1") == 0.0
  assert se.f1("the", "", version="v2.0") == 1.0  # "the" normalises to ""


def test_v11_max_over_golds_and_missing_counts_zero():
  gold = {"q1": ["Denver Broncos", "the Broncos"], "q2": ["1990"], "q3": ["Paris"]}
  preds = {"q1": "Broncos", "q2": "in 1990"}
  out = se.evaluate(gold, preds, version="v1.1")
  # q1: EM 1 (vs "the Broncos"), F1 1; q2: EM 0, F1 = 2*(1/2*1)/(1.5) = 2/3; q3 missing: 0
  assert out["exact_match"] == pytest.approx(100 * 1 / 3)
  assert out["f1"] == pytest.approx(100 * (1 + 2 / 3) / 3)
  assert out["total"] == 3


def test_v20_no_answer_and_threshold():
  gold = {"a": ["Paris"], "b": [], "c": ["the"], "d": ["blue sky"]}
  preds = {"a": "Paris", "b": "", "c": "something", "d": "sky"}
  out = se.evaluate(gold, preds, version="v2.0")
  # a: 1/1; b: unanswerable, "" -> 1/1; c: gold "the" normalises to "" -> unanswerable, wrong 0/0;
  # d: EM 0, F1 = 2*(1*0.5)/1.5 = 2/3
  assert out["exact_match"] == pytest.approx(100 * 2 / 4)
  assert out["f1"] == pytest.approx(100 * (2 + 2 / 3) / 4)
  assert out["HasAns_total"] == 2 and out["NoAns_total"] == 2
  assert out["NoAns_exact_match"] == pytest.approx(50.0)
  # With no-answer probabilities: c's 0.9 > 0.5 turns it into "" (correct).
  na = {"a": 0.1, "b": 0.8, "c": 0.9, "d": 0.2}
  out = se.evaluate(gold, preds, version="v2.0", na_probs=na, na_prob_thresh=0.5)
  assert out["exact_match"] == pytest.approx(75.0)
  # Best threshold, answering questions in order of na_prob, starting from 2 (abstain on all):
  # EM: a +1 -> 3 (thresh 0.1), d +0, b +0, c -1; so 3/4 at the first threshold reaching it.
  assert out["best_exact"] == pytest.approx(75.0)
  assert out["best_exact_thresh"] == pytest.approx(0.1)
  # F1: a +1 -> 3, d +2/3 -> 3 2/3 (thresh 0.2), b +0, c -1.
  assert out["best_f1"] == pytest.approx(100 * (3 + 2 / 3) / 4)
  assert out["best_f1_thresh"] == pytest.approx(0.2)


def test_v20_missing_predictions_are_left_out():
  out = se.evaluate({"a": ["x"], "b": ["y"]}, {"a": "x"}, version="v2.0")
  assert out["total"] == 1 and out["exact_match"] == 100.0


def test_unknown_prediction_ids_are_an_error():
  with pytest.raises(ValueError, match="not in the gold set"):
    se.evaluate({"a": ["x"]}, {"zzz": "x"})

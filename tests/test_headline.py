"""``orchestrator.headline``: the few metrics a trial logs by default, for every search space."""

from __future__ import annotations

import pytest

from orchestrator.headline import MAX_NAME, headline, headline_rows, reading_name
from search_spaces import SPACES
from vaecam.scoring import IMAGE_METHODS, scoring_grid


def _rows(grid: dict, metrics: list[str]) -> list[dict]:
    """A score table of ``grid`` as a trial writes it, each metric's value unique per row."""
    checked = scoring_grid(grid)
    rows = []
    for variant in checked.variants:
        if variant.method in IMAGE_METHODS:
            combinations = [(None, None)]
        else:
            combinations = [(n, s) for n in checked.normalisation for s in checked.image_score]
        for normalisation, image_score in combinations:
            row = variant._asdict() | {"normalisation": normalisation, "image_score": image_score}
            rows.append(row | {metric: len(rows) / 1000 for metric in metrics})
    return rows


@pytest.mark.parametrize("name", [n for n in sorted(SPACES) if SPACES[n].scoring])
def test_every_space_has_a_short_headline_of_its_reading_and_every_control(name):
    space = SPACES[name]
    metrics = sorted({claim["metric"] for claim in space.claims})
    rows = _rows(space.scoring, metrics)
    found = headline_rows(rows, space.claims)
    assert found and all(len(key) <= MAX_NAME for key in found)
    methods = {row["method"] for row in rows} - {"attention"}
    for claim in space.claims:
        metric = claim["metric"]
        (row, used) = found[f"{metric}/{reading_name(claim)}"]
        assert used == metric
        assert all(row[key] == value for key, value in claim["select"].items())
        for method in methods:
            if f"{metric}/{method}" in found:  # image-level controls have no pixel metric
                (control, _) = found[f"{metric}/{method}"]
                assert control["method"] == method
                for key in ("normalisation", "image_score"):  # scored as the reading is
                    assert control[key] in (None, claim["select"][key])


def test_a_new_control_appears_without_a_change_and_values_only_are_logged():
    grid = SPACES["digits"].scoring
    rows = [row for row in _rows(grid, ["image_auroc"]) if row["method"] != "untrained"]
    reading = SPACES["digits"].claims[0]["select"]
    # a control the grid did not have: the paper's reading on an untrained model
    untrained = dict(reading, method="untrained", image_auroc=0.51, image_auroc_ci_low=0.4)
    found = headline([*rows, untrained], SPACES["digits"].claims)
    assert found["image_auroc/untrained"] == 0.51
    assert not any(key.endswith(("_ci_low", "_ci_high", "_n_pos", "_n_neg")) for key in found)
    assert set(found) == {
        f"image_auroc/{name}"
        for name in ("authors_code", "recon", "energy", "gradient_energy", "random")
        + ("latent_distance", "untrained")
    }


def test_a_claim_under_two_readings_gets_one_metric_each():
    rows = _rows(SPACES["mvtec"].quick_scoring, ["pixel_auroc"])
    found = headline(rows, SPACES["mvtec"].claims)
    names = {"pixel_auroc/papers_equations", "pixel_auroc/reproductions_code"}
    assert names <= set(found)
    assert found["pixel_auroc/papers_equations"] != found["pixel_auroc/reproductions_code"]
    assert reading_name({"reading": "the authors' code"}) == "authors_code"
    assert reading_name({}) == "paper_reading"


def test_a_table_without_combinations_logs_the_claims_metric_under_its_own_name():
    row = {"factor_vae_score": 0.8, "mig": 0.1, "recon_error": 30.0}
    assert headline([row], SPACES["dsprites"].claims) == {"factor_vae_score": 0.8, "mig": 0.1}

"""Typed settings (vaecam.settings): every value checked by type, range and name."""

from dataclasses import dataclass, field
from typing import Any

import pytest

from vaecam.settings import SettingsError, check_settings, data_keys, defaults, setting


@dataclass(frozen=True)
class Example:
    lr: float = setting(1e-3, gt=0)
    epochs: int = setting(10, ge=1)
    fraction: float = setting(0.1, gt=0, lt=1)
    cap: int | None = setting(None, ge=1)
    model: str = setting("conv", choices=("conv", "resnet"), data=True)
    flip: bool = False
    options: dict[str, Any] = setting({"width": 4})
    pairs: str | int = "random"
    plain: list[int] = field(default_factory=list)


def test_defaults_and_data_keys():
    assert defaults(Example)["options"] == {"width": 4}
    assert defaults(Example)["options"] is not Example().options  # a fresh copy each time
    assert data_keys(Example) == ["model"]


def test_good_values_pass_and_ints_become_floats():
    checked = check_settings(Example, {"lr": 1, "cap": None, "pairs": 3, "flip": True})
    assert checked.lr == 1.0 and isinstance(checked.lr, float)
    assert checked.cap is None and checked.pairs == 3 and checked.flip is True


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"lr": "abc"}, "lr='abc': expected a number > 0"),
        ({"lr": 0}, "lr=0: expected a number > 0"),
        ({"lr": float("nan")}, "lr=nan: expected a number > 0"),
        ({"epochs": -1}, "epochs=-1: expected an integer >= 1"),
        ({"epochs": 2.5}, "epochs=2.5: expected an integer >= 1"),
        ({"epochs": True}, "epochs=True: expected an integer"),
        ({"fraction": 1.0}, "fraction=1.0: expected a number > 0 and < 1"),
        ({"cap": 0}, "cap=0: expected an integer >= 1 or null"),
        ({"model": "vit"}, "model='vit': expected one of conv, resnet"),
        ({"flip": "yes"}, "flip='yes': expected true or false"),
        ({"options": [1]}, "options=\\[1\\]: expected a JSON object"),
        ({"pairs": 1.5}, "pairs=1.5: expected a string or an integer"),
        ({"epochs": None}, "epochs=None: expected an integer"),
        ({"lrr": 1}, "unknown setting lrr; valid settings: cap, epochs, flip, fraction, lr"),
    ],
)
def test_a_bad_value_names_the_key_and_what_it_expects(values, message):
    with pytest.raises(SettingsError, match=message):
        check_settings(Example, values)


@dataclass(frozen=True)
class Rounds:
    iterations: int = setting(4, ge=1)
    every: int = setting(2, ge=1)

    def __post_init__(self):
        if self.iterations % self.every:
            raise ValueError(f"iterations={self.iterations} is not a multiple of every")


def test_cross_field_rules_are_settings_errors_too():
    with pytest.raises(SettingsError, match="iterations=5 is not a multiple"):
        check_settings(Rounds, {"iterations": 5})

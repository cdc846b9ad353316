"""Method options: what a domain accepts, in words, and errors without Pyomo's casting text."""
import math

import pytest
from pyomo.common.config import Bool, ConfigValue, In, NonNegativeFloat, PositiveInt

from stackopt.core.options import base_type, check, choices, describe, domain_of
from stackopt.methods import method_config


@pytest.mark.parametrize("options, message", [
    ({"steps": -5}, "option 'steps' of method 'gradient': expected a positive integer, got -5"),
    ({"steps": "many"}, "option 'steps' of method 'gradient': expected a positive integer, got 'many'"),
    ({"lr": math.nan}, "option 'lr' of method 'gradient': expected a finite number, got nan"),
    ({"optimizer": "rmsprop"},
     "option 'optimizer' of method 'gradient': expected one of 'adam', 'radam', 'sgd', 'spg', got 'rmsprop'"),
    ({"beta1": 1.5}, r"option 'beta1' of method 'gradient': expected a number in \[0, 1\), got 1.5"),
])
def test_method_config_errors_say_what_was_expected(options, message):
    with pytest.raises(ValueError, match=message) as info:
        method_config("gradient", options)
    assert "Failed casting" not in str(info.value) and "\n" not in str(info.value)


def test_method_config_accepts_and_casts():
    cfg = method_config("gradient", {"steps": "7", "optimizer": "sgd"})
    assert cfg.steps == 7 and cfg.optimizer == "sgd"


def test_domains_in_words_and_choices():
    assert describe(PositiveInt) == "a positive integer" and base_type(PositiveInt, 3) is int
    assert describe(In(["a", "b"])) == "one of 'a', 'b'" and choices(In(["a", "b"])) == ["a", "b"]
    assert choices(Bool) == [True, False] and base_type(Bool, True) is bool
    assert choices(NonNegativeFloat) is None and base_type(NonNegativeFloat, None) is float
    assert domain_of(ConfigValue(1, PositiveInt)) is PositiveInt
    assert check(None, "anything") == "anything"
    with pytest.raises(ValueError, match="expected a number >= 0, got -1"):
        check(NonNegativeFloat, -1)
    with pytest.raises(ValueError, match="expected true or false, got 'maybe'"):
        check(Bool, "maybe")

from __future__ import annotations

import pytest

from storyline.domain.pricing import Quality, price


@pytest.mark.parametrize(
    ("quality", "credits"), [(Quality.SD, 40), (Quality.HD, 60), (Quality.FULL_HD, 80)]
)
def test_price_is_base_40_times_the_quality_multiplier(quality: Quality, credits: int) -> None:
    assert price(quality) == credits

"""What a video costs, as the original editor priced it."""

from __future__ import annotations

import enum
import math
from fractions import Fraction

BASE_COST = 40  # story-editor / project-video


class Quality(enum.Enum):
    SD = "SD"
    HD = "HD"
    FULL_HD = "FULL_HD"


MULTIPLIERS: dict[Quality, Fraction] = {
    Quality.SD: Fraction(1),
    Quality.HD: Fraction(3, 2),
    Quality.FULL_HD: Fraction(2),
}


def price(quality: Quality) -> int:
    # Fractions keep ceil() exact where a float multiplier could round 60.000001 up to 61.
    return math.ceil(BASE_COST * MULTIPLIERS[quality])

"""benchmarks.report.peak_resident: the peak counts what the call allocates and is reset per call."""

import sys

import numpy as np
import pytest

from benchmarks import report


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")
def test_peak_resident_sees_the_call_and_resets():
  before = report.resident_mib()
  _, _, peak = report.peak_resident(lambda: np.ones(300 << 18).sum())  # 600 MiB of float64, freed
  assert peak >= before + 550
  _, _, quiet = report.peak_resident(lambda: None)  # the high-water mark was reset
  assert quiet < before + 100

"""Paths inside the repository that tests read: the public vectors, fixtures, samples."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VECTORS = REPO / "tests" / "vectors"
FIXTURES = REPO / "tests" / "fixtures"
SAMPLES = REPO / "data" / "samples"
EXAMPLES = REPO / "examples"
BENCH = REPO / "bench"

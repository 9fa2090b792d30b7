"""The recorded API shapes (copied from shared/fixtures) that the fake LiteLLM and provider servers serve."""
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / 'fixtures'

"""Suite-wide settings.

Hypothesis: a property test asserts a property, not a speed. Its timing checks (the per-example
deadline, "input generation too slow") fail on a loaded two-core CI machine for reasons that have
nothing to do with the code under test, so they are off; example counts stay as each test sets them.
"""

from hypothesis import HealthCheck, settings

settings.register_profile("suite", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("suite")

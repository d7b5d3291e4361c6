"""Suite-wide settings: property tests have no deadline (a busy machine must not fail them)."""

from hypothesis import settings

settings.register_profile("emma", deadline=None)
settings.load_profile("emma")

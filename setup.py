"""Only the optional C speedups; everything else is in pyproject.toml.

Without a C compiler the build goes on without them and the bridge uses its numpy
resamplers (same output, more CPU per call): see bridge/audio/_speedups.c.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("bridge.audio._speedups", ["bridge/audio/_speedups.c"], optional=True),
    ]
)

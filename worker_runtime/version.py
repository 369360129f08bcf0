"""The installed distribution's version."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tickwork")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+unknown"

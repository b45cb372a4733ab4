"""imagerank: popularity and authority in [0, 1] for every image of a Creative Commons catalog."""

__version__ = "0.1.0"

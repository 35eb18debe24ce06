"""The jobs' Hydra configuration, shipped as package data (``pkg://pipelines.conf``).

A package (not a plain folder) so that Hydra's ``pkg://`` search path finds it both in the
checkout and in an installed wheel.
"""

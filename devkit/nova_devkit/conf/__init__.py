"""The devkit's Hydra configs, shipped as package data: ``emulator.yaml`` and ``demo.yaml``.

A package (not a plain folder) so that Hydra's ``pkg://`` search path finds it installed or not.
"""

CONF_MODULE = __name__
CONF_PATH = f"pkg://{CONF_MODULE}"

"""Development kit of nova-embed-pipelines: what the tests, benchmarks and demo use, never shipped
with the library.

- :mod:`nova_devkit.emulator`: the local Bedrock Runtime-compatible endpoint and moto's S3
  (``python -m nova_devkit.emulator``);
- :mod:`nova_devkit.media`: media generated at run time (documents, images, audio, video);
- :mod:`nova_devkit.demo`: the demo (``python -m nova_devkit.demo``, ``make demo``).
"""

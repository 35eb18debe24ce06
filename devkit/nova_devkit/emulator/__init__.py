"""The project's local Bedrock Runtime-compatible endpoint (an emulator, not the model).

Import what you need from the submodules; nothing heavy is imported here:

- :func:`nova_devkit.emulator.launch.local_endpoints` ->
  :class:`~nova_devkit.emulator.launch.Endpoints` (moto S3 + emulator, for tests, the demo and
  benchmarks);
- :class:`nova_devkit.emulator.server.EmulatorServer` (the HTTP server with its control methods).

See ``README.md`` beside this package's modules (and ``docs/emulator.md``) for what it validates
and what it cannot know.
"""

"""The project's local Bedrock Runtime-compatible endpoint (an emulator, not the model).

Import what you need from the submodules; nothing heavy is imported here:

- :func:`pipelines.emulator.launch.local_endpoints` -> :class:`~pipelines.emulator.launch.Endpoints`
  (moto S3 + emulator, for tests, the demo and benchmarks);
- :class:`pipelines.emulator.server.EmulatorServer` (the HTTP server with its control methods).

See ``pipelines/emulator/README.md`` for what it validates and what it cannot know.
"""

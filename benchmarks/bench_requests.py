"""CPU per request on the embed actors' side, without the network: building, validating and
encoding an ``InvokeModel`` body, and parsing a response.

Usage: ``python -m benchmarks.bench_requests [--n 300] [--image-kb 276]``

Prints milliseconds of CPU per request for an inline image of ``--image-kb`` KiB (random bytes:
the base64 and JSON work depends on the size only) and a response parse at 1024 and 3072
dimensions. The HTTP call itself (botocore, signing, the socket) is not included; see
``benchmarks/README.md`` for a profile of a whole call.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time

from pipelines.bedrock.response import parse_embedding_response
from pipelines.config.schema import EmbeddingConfig
from pipelines.modalities import current


def per_call_ms(fn: object, n: int) -> float:
    call = fn  # a zero-argument callable
    t = time.process_time()
    for _ in range(n):
        call()  # type: ignore[operator]
    return (time.process_time() - t) / n * 1000


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--image-kb", type=int, default=276)
    args = ap.parse_args(argv)
    print(f"load {os.getloadavg()[0]:.2f}")
    image = current().get("image")
    assert image is not None
    row = {"input_bytes": os.urandom(args.image_kb * 1024), "input_format": "jpeg"}
    for dim in (1024, 3072):
        emb = EmbeddingConfig(dimension=dim)
        ms = per_call_ms(lambda emb=emb: image.request(row, emb).to_body_bytes(), args.n)
        print(f"requests.image_{args.image_kb}kb.{dim}.build_validate_encode_ms = {ms:.3f}")
        vec = [random.uniform(-0.1, 0.1) for _ in range(dim)]
        body = json.dumps({"embeddings": [{"embeddingType": "IMAGE", "embedding": vec}]}).encode()
        ms = per_call_ms(
            lambda body=body, dim=dim: parse_embedding_response(body, {}, expected_dimension=dim),
            args.n,
        )
        print(f"requests.parse.{dim}_ms = {ms:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

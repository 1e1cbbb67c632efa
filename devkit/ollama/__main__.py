"""python -m devkit.ollama --engine deterministic|llama --port N [--model NAME ...]"""

from __future__ import annotations

import argparse
import signal
import sys

from devkit.ollama.engines import DeterministicEngine, LlamaEngine, smollm2_path
from devkit.ollama.server import OllamaServer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11434)
    parser.add_argument("--engine", choices=["deterministic", "llama"], default="deterministic")
    parser.add_argument("--model", action="append", help="a model name to serve (repeatable)")
    parser.add_argument("--token-delay", type=float, default=0.0, help="deterministic engine: seconds per token")
    args = parser.parse_args()

    if args.engine == "llama":
        engine = LlamaEngine(smollm2_path())
        models = args.model or ["smollm2:135m"]
    else:
        engine = DeterministicEngine(token_delay=args.token_delay)
        models = args.model or ["smollm2:135m"]

    server = OllamaServer((args.host, args.port), engine, models)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"Ollama-compatible server ({args.engine}) on http://{args.host}:{args.port} serving {', '.join(models)}", flush=True)
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()

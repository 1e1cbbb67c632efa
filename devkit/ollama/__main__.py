"""python -m devkit.ollama --engine deterministic|llama --port N [--model NAME ...] [--slots N] [--loaded NAME ...]
[--load-seconds S] [--api-key KEY] [--thinking-model NAME ...]"""

from __future__ import annotations

import argparse
import signal
import sys

from devkit.ollama.capacity import Capacity
from devkit.ollama.engines import DeterministicEngine, LlamaEngine, smollm2_path
from devkit.ollama.server import OllamaServer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11434)
    parser.add_argument("--engine", choices=["deterministic", "llama"], default="deterministic")
    parser.add_argument("--model", action="append", help="a model name to serve (repeatable)")
    parser.add_argument("--token-delay", type=float, default=0.0, help="deterministic engine: seconds per token")
    parser.add_argument("--slots", type=int, default=0, help="requests served at once (OLLAMA_NUM_PARALLEL); 0: any")
    parser.add_argument("--max-queue", type=int, default=512, help="requests that may wait for a slot before 503")
    parser.add_argument("--loaded", action="append", help="a model loaded from the start (repeatable); default: all")
    parser.add_argument("--load-seconds", type=float, default=0.0, help="how long a model not loaded takes to load")
    parser.add_argument("--api-key", default="", help="the bearer token every route wants (none by default)")
    parser.add_argument("--thinking-model", action="append", default=[],
                        help="deterministic engine: a model that can think (repeatable); default: none")
    args = parser.parse_args()

    if args.engine == "llama":
        engine = LlamaEngine(smollm2_path())
        models = args.model or ["smollm2:135m"]
    else:
        engine = DeterministicEngine(token_delay=args.token_delay, thinking_models=args.thinking_model)
        models = args.model or ["smollm2:135m"]

    capacity = Capacity(slots=args.slots, max_queue=args.max_queue, load_seconds=args.load_seconds,
                        loaded=set(args.loaded) if args.loaded is not None else None)
    server = OllamaServer((args.host, args.port), engine, models, capacity=capacity, api_key=args.api_key)
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

"""python -m tests.realtime_standin [--host 127.0.0.1] [--port 8765] [--api-key KEY]"""

import argparse
import logging
import os

from aiohttp import web

from .server import DEFAULT_API_KEY, StandIn


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.realtime_standin", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--api-key",
        default=os.environ.get("STANDIN_API_KEY", DEFAULT_API_KEY),
        help="the bearer key it accepts (default: $STANDIN_API_KEY or %(default)s); "
        "set the app's OPENAI_API_KEY to the same value",
    )
    parser.add_argument("--quiet", action="store_true", help="no access log")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    standin = StandIn(args.api_key)
    print(f"Realtime stand-in: OPENAI_BASE_URL=http://{args.host}:{args.port}/v1", flush=True)
    web.run_app(
        standin.app(),
        host=args.host,
        port=args.port,
        print=None,
        access_log=None if args.quiet else logging.getLogger("standin"),
        handler_cancellation=True,
        shutdown_timeout=1.0,
    )


if __name__ == "__main__":
    main()

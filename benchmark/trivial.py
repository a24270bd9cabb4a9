"""A server that answers every POST at once with a fixed small JSON body: the load generator's yardstick.

`python -m benchmark.trivial --port N`. Whatever throughput the generator reaches against it is an upper
bound of what the generator can measure on this machine.
"""

from __future__ import annotations

import argparse

from aiohttp import web

from benchmark.replay import _use_uvloop

ANSWER = b'{"predictions": [{"score": 0.5}]}'


def make_app() -> web.Application:
    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=ANSWER, content_type="application/json")

    async def ready(_: web.Request) -> web.Response:
        return web.json_response({"ready": True})

    app = web.Application()
    app.router.add_post("/{tail:.*}", answer)
    app.router.add_get("/{tail:.*}", ready)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmark.trivial")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    _use_uvloop()
    web.run_app(make_app(), host="127.0.0.1", port=args.port, access_log=None, print=None, backlog=1024)


if __name__ == "__main__":
    main()

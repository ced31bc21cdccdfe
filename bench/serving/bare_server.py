"""The floor for an HTTP model server: parse the JSON body, call predict(), answer. Nothing else.

No validation, no metrics, no access log, no readiness: whatever our server costs above this is
the price of those features. Run with the main venv (aiohttp) or the bench overlay venv
(uvicorn + starlette), each with or without uvloop.

    python bare_server.py MODEL.joblib --port 8081 --framework aiohttp --loop uvloop
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import joblib
import numpy as np
import orjson


def _infer(model: Any, body: bytes) -> bytes:
    request = orjson.loads(body)
    tensor = request["inputs"][0]
    rows = np.asarray(tensor["data"], dtype=np.float64).reshape(tensor["shape"])
    prediction = model.predict(rows)
    return orjson.dumps(
        {
            "model_name": "bench",
            "outputs": [
                {
                    "name": "predict",
                    "shape": list(prediction.shape),
                    "datatype": "INT64",
                    "data": prediction,
                }
            ],
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


def aiohttp_app(model: Any) -> Any:
    """The aiohttp application (request_profile.py drives it in process)."""
    from aiohttp import web

    async def infer(request: web.Request) -> web.Response:
        return web.Response(
            body=_infer(model, await request.read()), content_type="application/json"
        )

    async def ready(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/v2/models/{name}/infer", infer)
    app.router.add_get("/v2/health/ready", ready)
    return app


def run_aiohttp(model: Any, port: int) -> None:
    from aiohttp import web

    web.run_app(aiohttp_app(model), host="127.0.0.1", port=port, access_log=None, print=None)


def run_starlette(model: Any, port: int, loop: str) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    async def infer(request: Request) -> Response:
        return Response(_infer(model, await request.body()), media_type="application/json")

    async def ready(_: Request) -> Response:
        return PlainTextResponse("ok")

    app = Starlette(
        routes=[
            Route("/v2/models/{name}/infer", infer, methods=["POST"]),
            Route("/v2/health/ready", ready),
        ]
    )
    uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, log_level="warning", loop=loop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", help="a joblib file")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--framework", choices=["aiohttp", "starlette"], default="aiohttp")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    args = parser.parse_args()
    model = joblib.load(args.model)
    model.predict(np.zeros((1, model.n_features_in_)))
    if args.framework == "starlette":
        run_starlette(model, args.port, args.loop)
        return
    if args.loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    run_aiohttp(model, args.port)


if __name__ == "__main__":
    main()

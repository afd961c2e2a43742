"""The sidecar's peer in the benchmark: a bare FastAPI endpoint answering a constant JSON 200.

Served the way stock deployments serve FastAPI and the way the sidecar is served: one uvicorn
process, uvloop + httptools, access log off. Nothing else (no middleware, no background task).

Run: python bench/bare_app.py --port 18099
"""

from __future__ import annotations

import argparse

import uvicorn
from fastapi import FastAPI

app = FastAPI()


@app.get("/ready")
@app.get("/live")
async def ready() -> dict[str, object]:
    return {"probe": "ready", "ok": True}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="bare FastAPI constant endpoint (benchmark peer)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=18099)
    args = p.parse_args(argv)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        workers=1,
    )


if __name__ == "__main__":
    main()

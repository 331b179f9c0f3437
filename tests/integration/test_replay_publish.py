"""`triarb replay FILE` publishes a recording through a replay venue and the real producer into Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from redis.asyncio import Redis

from common.config import Role
from common.redis import RedisEndpoint
from schemas import Snapshot
from schemas.codec import decode_json_as

pytestmark = pytest.mark.integration


async def test_replayed_kraken_recording_fills_the_stream_and_hot_cache(
    fixtures_dir: Path, redis_server: RedisEndpoint, admin: Redis, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIARB_")}
    env |= {"REDIS_URL": redis_server.url(), "TRIARB_REDIS_PASSWORDS__PRODUCER": redis_server.passwords[Role.PRODUCER],
            "TRIARB_LOG_FORMAT": "json", "TRIARB_VAR_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "triarb.cli", "replay", str(fixtures_dir / "kraken-v1-2021.ndjson"), "--max-speed"],
        env=env, cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert (summary["checksum_fail"], summary["gaps"], summary["parse_errors"]) == (0, 0, 0)
    assert summary["published"] == 3541  # 10 snapshots + 3,531 verified updates
    assert await admin.xlen("md.snapshot") == summary["published"]
    cached = decode_json_as(Snapshot, await admin.get("md:book:kraken:XMR-USD"))
    assert (cached.bids[0][0], cached.asks[0][0]) == (353.3, 354.31)  # the recording's final top of book

"""``kill -9`` of a real ``skinedge serve --case-log`` while 8 clients classify real photos: the database passes
``PRAGMA integrity_check`` and holds every case whose answer a client received, with its photo.

CI runs a few kills (``SKINEDGE_SERVE_KILLS``, default 3); ``benchmarks/kiosk_bench.py`` runs 20 for the record.
"""

from __future__ import annotations

import os
from pathlib import Path

import kiosk_soak

KILLS = int(os.environ.get("SKINEDGE_SERVE_KILLS", "3"))


def test_kill_9_under_load_loses_no_acknowledged_case(tmp_path: Path, skin6_dir: Path) -> None:
    photos = [p.read_bytes() for p in sorted((skin6_dir / "test").rglob("*.jpg"))[::50][:8]]
    result = kiosk_soak.run(tmp_path, photos, kills=KILLS, clients=8, window_s=(0.4, 1.2))
    report = result.to_dict()
    print("kill soak:", report)
    assert result.kills == KILLS and result.requests_answered > 0, report
    assert result.integrity == "ok", report
    assert result.lost == [] and result.wrong == [] and result.missing_photos == [], report
    assert result.duplicate_ids == 0, report  # a case id is never handed out twice, even across crashes

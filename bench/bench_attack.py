#!/usr/bin/env python3
"""One unauthenticated client against `luatos-fota serve` with its defaults, for 60 s.

Runs the attack of tests/security/test_growth.py (random device ids, version flapping, garbage
requests, private-package pulls, push login/answer floods, deep JSON) while legitimate devices
keep checking in, and prints what the issue's goals measure: database growth, server RSS growth
and the p99 latency of the legitimate check-ins. Exit 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.security.attack import (  # noqa: E402
    FW,
    KEY,
    package,
    register_fleet,
    served,
    unauthenticated_flood,
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    def setup(st):  # type: ignore[no-untyped-def]
        p = st.products.add(KEY, FW)
        st.releases.add(package(), product_id=p.id, version="001.000.002")
        register_fleet(st, p.id)

    with tempfile.TemporaryDirectory() as tmp, served(Path(tmp), {"device_rate": 5.0}, push=True,
                                                      setup=setup) as s:
        m = unauthenticated_flood(s, args.seconds)
        m["audit_suppressed"] = s.healthz()["audit_suppressed"]
    m.pop("legit_not_304_sample", None)
    goals = [("database growth < 1 MB", m["db_growth_bytes"] < 1_000_000 * args.seconds / 60),
             ("RSS growth < 50 MB", m["rss_growth_bytes"] < 50 << 20),
             ("p99 of legitimate check-ins < 100 ms", m["legit_p99_ms"] < 100),
             ("no legitimate check-in refused", m["legit_not_304"] == 0)]
    if args.json:
        print(json.dumps({**m, "goals": dict(goals)}))
    else:
        print(f"attack: {m['attack_requests']} requests/sessions in {args.seconds:g} s from one client")
        print(f"database growth   {m['db_growth_bytes'] / 1e6:.3f} MB")
        print(f"server RSS growth {m['rss_growth_bytes'] / 2**20:.1f} MB")
        print(f"legit check-ins   {m['legit_checkins']}, p99 {m['legit_p99_ms']:.1f} ms, "
              f"refused {m['legit_not_304']}")
        print(f"audit rows suppressed by the per-address budget: {m['audit_suppressed']}")
        for name, ok in goals:
            print(f"  {'ok  ' if ok else 'MISS'} {name}")
    return 0 if all(ok for _, ok in goals) else 1


if __name__ == "__main__":
    sys.exit(main())

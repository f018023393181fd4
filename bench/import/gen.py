#!/usr/bin/env python3
"""A consent history to import (bench/import.sh): `gen.py ROWS [SUBJECTS] > file.csv`.

ROWS decisions (default subjects: ROWS / 10) of 60% `email:userN@example.com` and 40% `user:N`
subjects, over the four purposes of tenant.toml, from 2020-01-01 on with increasing
`occurred_at`, under the revision of the privacy policy in force at that time (three), some with
a region. Each row changes the subject's decision for its purpose (a first decision is granted
two times in three), so each row is one event. Deterministic (seeded).
"""
import random
import sys
import calendar
import time

rows = int(sys.argv[1])
subjects = int(sys.argv[2]) if len(sys.argv) > 2 else max(1, rows // 10)
rnd = random.Random(20261205)
purposes = ["analytics", "marketing_email", "personalisation", "partners"]
revisions = [(calendar.timegm((2022, 3, 1, 0, 0, 0)), "2019-06-01"),
             (calendar.timegm((2024, 9, 15, 0, 0, 0)), "2022-03-01"),
             (float("inf"), "2024-09-15")]
regions = ["", "", "", "", "FR", "DE", "US-CA", "GB"]
start = 1577836800  # 2020-01-01T00:00:00Z
span = 1764547200 - start  # to 2025-12-01
step = span / rows
last = bytearray(subjects * len(purposes))  # 0 none, 1 granted, 2 denied
names = [f"email:user{n}@example.com" if n % 5 < 3 else f"user:{n}" for n in range(subjects)]
out = sys.stdout
out.write("subject,purpose,decision,occurred_at,policy_revision,region\n")
buf = []
for i in range(rows):
    s = rnd.randrange(subjects)
    p = rnd.randrange(len(purposes))
    slot = s * len(purposes) + p
    prev = last[slot]
    d = (1 if rnd.random() < 2 / 3 else 2) if prev == 0 else 3 - prev
    last[slot] = d
    t = start + int(i * step)
    rev = next(r for until, r in revisions if t < until)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
    buf.append(f"{names[s]},{purposes[p]},{'granted' if d == 1 else 'denied'},{stamp},{rev},{regions[s % 8]}\n")
    if len(buf) >= 100000:
        out.write("".join(buf))
        buf.clear()
out.write("".join(buf))
